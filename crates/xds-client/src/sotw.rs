//! State-of-the-world ADS (`StreamAggregatedResources`), sans-IO.
//!
//! Per type the client keeps the subscribed names (LDS and CDS are wildcard), the last ACKed
//! `version_info` and the last nonce. A response is decoded, handed whole to the consumer, and answered
//! with an ACK (its version and nonce) or a NACK (the previous ACKed version, its nonce and an
//! `error_detail` listing `name: reason`).

use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::core::{self, Consumer, Core, Event, Outcome, SubChange, check_duplicates, nack_status};
use crate::resources::ResourceType;
use xds_api::pb::google::rpc::Status;

/// The state-of-the-world protocol core: feed it responses, send what it returns.
#[derive(Debug)]
pub struct SotwClient {
    core: Core,
}

impl SotwClient {
    /// A client that identifies as `node`. Nothing is sent until [`start_stream`](Self::start_stream).
    pub fn new(node: Node) -> SotwClient {
        SotwClient {
            core: Core::new(node),
        }
    }

    /// A new stream is open: the requests that (re)subscribe to everything, in warming order, the first
    /// carrying the node. On a reconnect they carry the last ACKed versions, with no nonce.
    pub fn start_stream(&mut self) -> Vec<DiscoveryRequest> {
        let types = self.core.start_stream();
        types.into_iter().map(|ty| self.request(ty)).collect()
    }

    /// Handles one response: decode, validate through `consumer`, ACK or NACK, then any subscription
    /// change the accepted set implies (EDS after CDS, RDS after LDS, LDS once clusters are warm).
    pub fn on_response<C: Consumer + ?Sized>(
        &mut self,
        response: DiscoveryResponse,
        consumer: &mut C,
    ) -> Outcome<DiscoveryRequest> {
        let ty = match core::response_type(self, response.type_url.clone(), response.nonce.clone())
        {
            Ok(ty) => ty,
            Err(outcome) => return outcome,
        };
        self.core.st_mut(ty).nonce = response.nonce;

        let mut items = Vec::with_capacity(response.resources.len());
        let mut rejections = Vec::new();
        for (i, any) in response.resources.iter().enumerate() {
            match core::decode(ty, any, None, i, response.version_info.clone()) {
                Ok(item) => items.push(item),
                Err(r) => rejections.push(r),
            }
        }
        check_duplicates(&items, &mut rejections);
        let result = if rejections.is_empty() {
            let replace = ty.is_wildcard();
            self.core
                .apply(ty, &response.version_info, items, &[], replace, consumer)
        } else {
            Err(rejections)
        };
        consumer.update_done(ty, result.is_ok());
        let mut requests = Vec::new();
        let event = match result {
            Ok((changes, resources)) => {
                requests.push(self.request(ty));
                requests.extend(self.changes_to_requests(changes));
                Event::Accepted {
                    ty,
                    version: response.version_info,
                    resources,
                }
            }
            Err(rejections) => {
                let status = nack_status(ty.short_name(), &rejections);
                let mut request = self.request(ty);
                request.error_detail = Some(status.clone());
                requests.push(request);
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

    fn changes_to_requests(
        &mut self,
        changes: impl IntoIterator<Item = SubChange>,
    ) -> Vec<DiscoveryRequest> {
        changes.into_iter().map(|c| self.request(c.ty)).collect()
    }

    /// The current request for `ty`: its names, last ACKed version and last nonce.
    fn request(&mut self, ty: ResourceType) -> DiscoveryRequest {
        let node = self.core.take_node();
        let st = self.core.st(ty);
        DiscoveryRequest {
            version_info: st.version.clone(),
            node,
            resource_names: if ty.is_wildcard() {
                Vec::new()
            } else {
                st.names.iter().cloned().collect()
            },
            resource_locators: Vec::new(),
            type_url: ty.type_url().to_owned(),
            response_nonce: st.nonce.clone(),
            error_detail: None,
        }
    }
}

impl core::sealed::Parts for SotwClient {
    type Request = DiscoveryRequest;

    fn core(&self) -> &Core {
        &self.core
    }

    fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }

    fn requests_for(&mut self, changes: Vec<SubChange>) -> Vec<DiscoveryRequest> {
        self.changes_to_requests(changes)
    }

    fn nack(&mut self, type_url: String, nonce: String, error: Status) -> DiscoveryRequest {
        DiscoveryRequest {
            node: self.core.take_node(),
            type_url,
            response_nonce: nonce,
            error_detail: Some(error),
            ..Default::default()
        }
    }
}
