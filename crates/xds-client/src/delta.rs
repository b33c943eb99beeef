//! Incremental ("delta") ADS (`DeltaAggregatedResources`), sans-IO.
//!
//! Subscriptions change by `resource_names_subscribe` / `resource_names_unsubscribe`; a response carries
//! changed resources with per-resource versions and the names of removed ones; the client ACKs with the
//! response's nonce and NACKs with the nonce plus an `error_detail`. On a new stream the client
//! re-subscribes with `initial_resource_versions`, so the server sends only what changed meanwhile.
//! The consumer still sees the complete set of a type: the client merges each delta into what it holds.

use std::collections::{BTreeMap, HashMap};

use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};

use crate::core::{self, Consumer, Core, Event, Outcome, SubChange, check_duplicates, nack_status};
use crate::resources::{Rejection, ResourceType};
use xds_api::pb::google::rpc::Status;

/// The delta protocol core: feed it responses, send what it returns.
#[derive(Debug)]
pub struct DeltaClient {
    core: Core,
}

impl DeltaClient {
    /// A client that identifies as `node`. Nothing is sent until [`start_stream`](Self::start_stream).
    pub fn new(node: Node) -> DeltaClient {
        DeltaClient {
            core: Core::new(node),
        }
    }

    /// A new stream is open: one request per subscribed type, in warming order, the first carrying the
    /// node, each with the names (none for the wildcard LDS/CDS) and the versions of the resources the
    /// client already holds.
    pub fn start_stream(&mut self) -> Vec<DeltaDiscoveryRequest> {
        let types = self.core.start_stream();
        types
            .into_iter()
            .map(|ty| {
                let node = self.core.take_node();
                let st = self.core.st(ty);
                DeltaDiscoveryRequest {
                    node,
                    type_url: ty.type_url().to_owned(),
                    resource_names_subscribe: if ty.is_wildcard() {
                        Vec::new()
                    } else {
                        st.names.iter().cloned().collect()
                    },
                    initial_resource_versions: st
                        .cache
                        .iter()
                        .map(|(name, c)| (name.clone(), c.version.clone()))
                        .collect::<HashMap<_, _>>(),
                    ..Default::default()
                }
            })
            .collect()
    }

    /// Handles one response: decode, merge into the held set, validate the whole set through
    /// `consumer`, ACK or NACK, then any subscription change the accepted set implies.
    pub fn on_response<C: Consumer + ?Sized>(
        &mut self,
        response: DeltaDiscoveryResponse,
        consumer: &mut C,
    ) -> Outcome<DeltaDiscoveryRequest> {
        let ty = match core::response_type(self, response.type_url.clone(), response.nonce.clone())
        {
            Ok(ty) => ty,
            Err(outcome) => return outcome,
        };
        self.core.st_mut(ty).nonce = response.nonce.clone();

        let mut items = Vec::with_capacity(response.resources.len());
        let mut rejections = Vec::new();
        for (i, r) in response.resources.iter().enumerate() {
            let Some(any) = &r.resource else {
                let label = if r.name.is_empty() {
                    format!("resources[{i}]")
                } else {
                    r.name.clone()
                };
                rejections.push(Rejection::new(label, "resource has no body"));
                continue;
            };
            match core::decode(ty, any, Some(&r.name), i, r.version.clone()) {
                Ok(item) => items.push(item),
                Err(rej) => rejections.push(rej),
            }
        }
        check_duplicates(&items, &mut rejections);
        let removed: Vec<String> = response
            .removed_resources
            .iter()
            .cloned()
            .chain(
                response
                    .removed_resource_names
                    .iter()
                    .map(|r| r.name.clone()),
            )
            .collect();
        let result = if rejections.is_empty() {
            self.core.apply(
                ty,
                &response.system_version_info,
                items,
                &removed,
                false,
                consumer,
            )
        } else {
            Err(rejections)
        };
        consumer.update_done(ty, result.is_ok());
        let mut requests = Vec::new();
        let node = self.core.take_node();
        let event = match result {
            Ok((changes, resources)) => {
                requests.push(DeltaDiscoveryRequest {
                    node,
                    type_url: ty.type_url().to_owned(),
                    response_nonce: response.nonce,
                    ..Default::default()
                });
                requests.extend(self.changes_to_requests(changes));
                Event::Accepted {
                    ty,
                    version: response.system_version_info,
                    resources,
                }
            }
            Err(rejections) => {
                let status = nack_status(ty.short_name(), &rejections);
                requests.push(DeltaDiscoveryRequest {
                    node,
                    type_url: ty.type_url().to_owned(),
                    response_nonce: response.nonce,
                    error_detail: Some(status.clone()),
                    ..Default::default()
                });
                let changes = self.core.rejected(ty);
                requests.extend(self.changes_to_requests(changes));
                Event::Rejected {
                    type_url: response.type_url,
                    message: status.message,
                }
            }
        };
        Outcome {
            requests,
            event,
            initial_config_complete: self.core.take_complete(consumer),
        }
    }

    /// The per-resource versions the client holds for `ty` (what it would send as
    /// `initial_resource_versions`).
    pub fn resource_versions(&self, ty: ResourceType) -> BTreeMap<String, String> {
        self.core
            .st(ty)
            .cache
            .iter()
            .map(|(n, c)| (n.clone(), c.version.clone()))
            .collect()
    }

    fn changes_to_requests(
        &mut self,
        changes: impl IntoIterator<Item = SubChange>,
    ) -> Vec<DeltaDiscoveryRequest> {
        changes
            .into_iter()
            .map(|c| DeltaDiscoveryRequest {
                node: self.core.take_node(),
                type_url: c.ty.type_url().to_owned(),
                resource_names_subscribe: c.added,
                resource_names_unsubscribe: c.removed,
                ..Default::default()
            })
            .collect()
    }
}

impl core::sealed::Parts for DeltaClient {
    type Request = DeltaDiscoveryRequest;

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    fn requests_for(&mut self, changes: Vec<SubChange>) -> Vec<DeltaDiscoveryRequest> {
        self.changes_to_requests(changes)
    }

    fn nack(&mut self, type_url: String, nonce: String, error: Status) -> DeltaDiscoveryRequest {
        DeltaDiscoveryRequest {
            node: self.core.take_node(),
            type_url,
            response_nonce: nonce,
            error_detail: Some(error),
            ..Default::default()
        }
    }
}
