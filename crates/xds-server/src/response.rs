//! Responses as the protocol state machines decide them: the message's own fields, and its
//! resources still shared with the snapshot. A push of one route table to 200 proxies then holds
//! one copy of it, not 200: each stream's gRPC frames refer to the snapshot's encoded bytes
//! ([`Prepared::frames`]) instead of copying them into a message and then into a buffer.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{encode_varint, encoded_len_varint};
use tonic::Status;
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource,
};

use crate::snapshot::VersionedResource;

/// A resource a response carries.
#[derive(Debug, Clone)]
pub struct Carried {
    /// Delta xDS wraps each resource in a `Resource` with its name and version; state of the world
    /// sends the bare `Any`.
    pub(crate) name: Option<String>,
    pub(crate) resource: Arc<VersionedResource>,
}

impl Carried {
    pub(crate) fn any(resource: &Arc<VersionedResource>) -> Carried {
        Carried {
            name: None,
            resource: resource.clone(),
        }
    }

    pub(crate) fn named(name: &str, resource: &Arc<VersionedResource>) -> Carried {
        Carried {
            name: Some(name.to_owned()),
            resource: resource.clone(),
        }
    }

    /// The length of the `Resource` wrapper's body (delta), or of the `Any`.
    fn body_len(&self) -> usize {
        let any = self.resource.encoded_any().len();
        match &self.name {
            None => any,
            Some(name) => {
                let version = self.resource.version.len();
                field_len(version) + field_len(any) + field_len(name.len())
            }
        }
    }
}

/// A length-delimited field's size: its one-byte tag (fields 1 to 15), length and bytes.
fn field_len(len: usize) -> usize {
    1 + encoded_len_varint(len as u64) + len
}

fn put_field_head(buf: &mut BytesMut, tag: u8, len: usize) {
    buf.put_u8(tag);
    encode_varint(len as u64, buf);
}

/// Field 1, 2 and 3, length-delimited (wire type 2).
const FIELD_1: u8 = 0x0a;
const FIELD_2: u8 = 0x12;
const FIELD_3: u8 = 0x1a;

/// An encoded resource at least this long goes out as its own chunk, shared; shorter ones are
/// copied next to their framing.
const SHARE_FROM: usize = 1024;

/// A response: its message without resources, and what it carries.
#[derive(Debug, Clone)]
pub struct Prepared<M> {
    pub(crate) head: M,
    pub(crate) resources: Vec<Carried>,
}

impl<M: Message> Prepared<M> {
    /// How many resources it carries.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether it carries no resources.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The gRPC frame of the message, in chunks: the 5-byte header, the message's own fields, then
    /// each resource as field 2 (`resources`, in both `DiscoveryResponse` and
    /// `DeltaDiscoveryResponse`). A protobuf message may have its fields in any order, so this is
    /// the message prost would decode. Large resources are the snapshot's bytes, not copies.
    pub(crate) fn frames(&self, max: usize) -> Result<Vec<Bytes>, Status> {
        let head_len = self.head.encoded_len();
        let len = head_len
            + self
                .resources
                .iter()
                .map(|c| field_len(c.body_len()))
                .sum::<usize>();
        if len > max {
            return Err(Status::resource_exhausted(format!(
                "an xDS response of {len} bytes is over the {max}-byte message limit"
            )));
        }
        let mut chunks = Vec::new();
        let mut buf = BytesMut::with_capacity((5 + head_len + 64).min(5 + len));
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        self.head
            .encode(&mut buf)
            .map_err(|e| Status::internal(format!("encoding an xDS response: {e}")))?;
        for c in &self.resources {
            let any = c.resource.encoded_any();
            put_field_head(&mut buf, FIELD_2, c.body_len());
            if let Some(name) = &c.name {
                let version = &c.resource.version;
                put_field_head(&mut buf, FIELD_1, version.len());
                buf.put_slice(version.as_bytes());
                put_field_head(&mut buf, FIELD_2, any.len());
                put_any(&mut buf, &mut chunks, any);
                put_field_head(&mut buf, FIELD_3, name.len());
                buf.put_slice(name.as_bytes());
            } else {
                put_any(&mut buf, &mut chunks, any);
            }
        }
        if !buf.is_empty() {
            chunks.push(buf.freeze());
        }
        Ok(chunks)
    }
}

/// Copies a small `any` into `buf`; a large one ends the current chunk and is a chunk of its own.
fn put_any(buf: &mut BytesMut, chunks: &mut Vec<Bytes>, any: &Bytes) {
    if any.len() < SHARE_FROM {
        buf.put_slice(any);
    } else {
        chunks.push(buf.split().freeze());
        chunks.push(any.clone());
    }
}

/// A discovery response (state of the world or delta) whose resources a [`Prepared`] carries apart.
pub trait CarriesResources: Message + Sized {
    /// `self` with `resources` as its field 2, each copied.
    fn with_resources(self, resources: &[Carried]) -> Self;
}

impl CarriesResources for DiscoveryResponse {
    fn with_resources(mut self, resources: &[Carried]) -> Self {
        self.resources = resources.iter().map(|c| c.resource.any()).collect();
        self
    }
}

impl CarriesResources for DeltaDiscoveryResponse {
    fn with_resources(mut self, resources: &[Carried]) -> Self {
        self.resources = resources
            .iter()
            .map(|c| Resource {
                name: c.name.clone().unwrap_or_default(),
                version: c.resource.version.clone(),
                resource: Some(c.resource.any()),
                ..Default::default()
            })
            .collect();
        self
    }
}

impl<M: CarriesResources> Prepared<M> {
    /// The whole message (a copy of every resource).
    pub fn message(self) -> M {
        self.head.with_resources(&self.resources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xds_api::pb::google::protobuf::Any;

    fn resource(len: usize) -> Arc<VersionedResource> {
        Arc::new(VersionedResource::new(Any {
            type_url: xds_api::type_url::CLUSTER.into(),
            value: vec![9; len],
        }))
    }

    fn decoded<M: Message + Default>(chunks: &[Bytes]) -> M {
        let wire: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        assert_eq!(wire[0], 0);
        let len = u32::from_be_bytes([wire[1], wire[2], wire[3], wire[4]]) as usize;
        assert_eq!(wire.len(), 5 + len);
        M::decode(&wire[5..]).expect("decodes")
    }

    /// The chunks decode to the message the response stands for, for both modes, with small and
    /// large (shared, not copied) resources.
    #[test]
    fn frames_decode_to_the_message() {
        let (small, large) = (resource(10), resource(5000));
        let sotw = Prepared {
            head: DiscoveryResponse {
                version_info: "v1".into(),
                nonce: "1-1".into(),
                type_url: xds_api::type_url::CLUSTER.into(),
                ..Default::default()
            },
            resources: vec![
                Carried::any(&small),
                Carried::any(&large),
                Carried::any(&small),
            ],
        };
        let chunks = sotw.frames(1 << 20).expect("fits");
        assert!(
            chunks
                .iter()
                .any(|c| c.as_ptr() == large.encoded_any().as_ptr()),
            "the large resource is shared"
        );
        assert_eq!(
            decoded::<DiscoveryResponse>(&chunks),
            sotw.clone().message()
        );
        let delta = Prepared {
            head: DeltaDiscoveryResponse {
                system_version_info: "v1".into(),
                nonce: "1-1".into(),
                removed_resources: vec!["gone".into()],
                ..Default::default()
            },
            resources: vec![Carried::named("a", &large), Carried::named("b", &small)],
        };
        let chunks = delta.frames(1 << 20).expect("fits");
        assert_eq!(
            decoded::<DeltaDiscoveryResponse>(&chunks),
            delta.clone().message()
        );
        let len: usize = chunks.iter().map(Bytes::len).sum::<usize>() - 5;
        let e = delta.frames(len - 1).expect_err("over the limit");
        assert_eq!(e.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            e.message(),
            format!(
                "an xDS response of {len} bytes is over the {}-byte message limit",
                len - 1
            )
        );
    }
}
