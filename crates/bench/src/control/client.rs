//! The simulated proxies: real ADS clients over gRPC, one tokio task and one HTTP/2 connection each,
//! driving xds-client's sans-IO protocol cores (`SotwClient` or `DeltaClient`) as Envoy would: CDS and
//! LDS wildcard, EDS for the clusters' EDS names and RDS for the listeners' route names, every response
//! decoded and ACKed.
//!
//! Each client writes what it has ACKed, and when, into its slot on a shared [`Board`]; the benchmark
//! waits on the board. Rather than trusting version strings, a client looks inside what it accepted: the
//! v1 weight of the probe service's route and the number of endpoints of its cluster. A change counts
//! as arrived at a proxy at the ACK of the response that carried the new value.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use xds_api::pb::envoy::config::core::v3::Node;
use xds_api::pb::envoy::config::route::v3::VirtualHost;
use xds_api::pb::envoy::config::route::v3::route::Action;
use xds_api::pb::envoy::config::route::v3::route_action::ClusterSpecifier;
use xds_api::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use xds_api::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use xds_api::pb::google::protobuf::{Struct, Value, value::Kind};
use xds_client::{
    Consumer, DeltaClient, Event, Outcome, Rejection, Resource, ResourceSet, ResourceType,
    SotwClient,
};

type Grpc = AggregatedDiscoveryServiceClient<Channel>;

/// Largest response accepted: a big mesh's CDS or EDS is several MiB (tonic's default is 4 MiB).
const MAX_MESSAGE: usize = 256 << 20;
/// Outgoing requests queued per stream (ACKs and subscription changes; a handful at a time).
const QUEUE: usize = 64;
/// Bound on queueing one request for the server.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// What one simulated proxy has received so far.
#[derive(Debug, Default, Clone)]
pub struct Slot {
    pub node_id: String,
    /// When the initial config (CDS, EDS, LDS, RDS) was complete.
    pub ready_at: Option<Instant>,
    /// The v1 weight in the probe service's route, and when the response carrying it was ACKed.
    pub route_probe: Option<(u32, Instant)>,
    /// The probe cluster's endpoint count, and when the response carrying it was ACKed.
    pub endpoints_probe: Option<(usize, Instant)>,
    /// Last ACKed version per type (SotW `version_info`, delta `system_version_info`).
    pub acked: BTreeMap<ResourceType, String>,
    /// Resources held per type after the last ACK.
    pub held: BTreeMap<ResourceType, usize>,
    pub responses: u64,
    pub nacks: u64,
    pub last_nack: Option<String>,
    /// Time spent decoding and applying responses (the client's own CPU cost).
    pub busy: Duration,
    /// Why the stream ended, if it did.
    pub error: Option<String>,
}

/// The slots of all proxies, and a wake-up for whoever waits on them.
#[derive(Debug)]
pub struct Board {
    pub slots: Vec<Mutex<Slot>>,
    pub notify: Notify,
}

impl Board {
    pub fn new(node_ids: Vec<String>) -> Arc<Board> {
        Arc::new(Board {
            slots: node_ids
                .into_iter()
                .map(|node_id| {
                    Mutex::new(Slot {
                        node_id,
                        ..Slot::default()
                    })
                })
                .collect(),
            notify: Notify::new(),
        })
    }

    pub fn slot(&self, i: usize) -> MutexGuard<'_, Slot> {
        self.slots[i].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of every slot.
    pub fn snapshot(&self) -> Vec<Slot> {
        (0..self.slots.len())
            .map(|i| self.slot(i).clone())
            .collect()
    }
}

/// Who proxy `p` is: a sidecar in one of the namespaces with its own 127.0.0.0/8 address, as
/// `bosun bootstrap --interception none` would describe it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node_id: String,
    pub namespace: String,
    pub pod: String,
}

impl Identity {
    pub fn new(p: usize, namespace: String) -> Identity {
        let pod = format!("bench-client-{p}");
        let ip = format!("127.0.{}.{}", 1 + p / 250, p % 250 + 1);
        Identity {
            node_id: format!("sidecar~{ip}~{pod}.{namespace}~{namespace}.svc.cluster.local"),
            namespace,
            pod,
        }
    }

    /// The node with Istio's metadata (LABELS, NAMESPACE, INTERCEPTION_MODE), as bootstrap_cmd.rs
    /// writes it; with `vhds`, asking for virtual hosts over VHDS as `bosun bootstrap --vhds` does.
    pub fn node(&self, vhds: bool) -> Node {
        let string = |s: &str| Value {
            kind: Some(Kind::StringValue(s.to_owned())),
        };
        let labels = Struct {
            fields: [("app", "bench-client"), ("version", "v1")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), string(v)))
                .collect(),
        };
        let mut metadata = Struct {
            fields: [
                (
                    "LABELS".to_owned(),
                    Value {
                        kind: Some(Kind::StructValue(labels)),
                    },
                ),
                ("NAMESPACE".to_owned(), string(&self.namespace)),
                ("INTERCEPTION_MODE".to_owned(), string("NONE")),
                ("CLUSTER_ID".to_owned(), string("Kubernetes")),
                ("NAME".to_owned(), string(&self.pod)),
            ]
            .into_iter()
            .collect(),
        };
        if vhds {
            metadata
                .fields
                .insert(control::node::VHDS_METADATA.to_owned(), string("true"));
        }
        Node {
            id: self.node_id.clone(),
            cluster: format!("bench-client.{}", self.namespace),
            metadata: Some(metadata),
            ..Default::default()
        }
    }
}

/// What the client looks at in what it accepts: the probe service's route and cluster.
#[derive(Debug, Clone)]
pub struct Probe {
    /// The virtual host of the probe service (`HOST:PORT`).
    pub vhost: String,
    /// Its name over VHDS (`TABLE/HOST:PORT`).
    pub vhds_name: String,
    /// The EDS name of the probe service's default cluster.
    pub cluster: String,
}

/// The consumer: accepts everything, and reads the probe values out of it.
struct Reader {
    probe: Probe,
    v1_weight: Option<u32>,
    endpoints: Option<usize>,
}

impl Reader {
    /// Whether `vhost` (of a route table) is the probe service's.
    fn is_probe(&self, vhost: &VirtualHost) -> bool {
        vhost.name == self.probe.vhost
    }
}

/// The weight of the `v1` subset in the first route of `vhost` (100 when it is not split).
fn v1_weight(vhost: &VirtualHost) -> Option<u32> {
    let action = vhost.routes.first()?.action.as_ref()?;
    let Action::Route(route) = action else {
        return None;
    };
    match route.cluster_specifier.as_ref()? {
        ClusterSpecifier::WeightedClusters(w) => w
            .clusters
            .iter()
            .find(|c| c.name.contains("|v1|"))
            .map(|c| c.weight.as_ref().map_or(0, |w| w.value)),
        // No split: everything goes to one cluster.
        _ => Some(100),
    }
}

impl Consumer for Reader {
    /// Reads the probe values where the client holds them: a simulated proxy copies nothing.
    fn apply(&mut self, set: ResourceSet<'_>) -> Result<(), Vec<Rejection>> {
        match set.resource_type() {
            ResourceType::Route => {
                if let Some(w) = set
                    .iter()
                    .filter_map(|r| match r {
                        Resource::Route(r) => Some(&r.virtual_hosts),
                        _ => None,
                    })
                    .flatten()
                    .find(|v| self.is_probe(v))
                    .and_then(v1_weight)
                {
                    self.v1_weight = Some(w);
                }
            }
            ResourceType::VirtualHost => {
                self.v1_weight = match set.get(&self.probe.vhds_name) {
                    Some(Resource::VirtualHost(v)) => v1_weight(v),
                    _ => None,
                };
            }
            ResourceType::Endpoints => {
                self.endpoints = match set.get(&self.probe.cluster) {
                    Some(Resource::Endpoints(c)) => {
                        Some(c.endpoints.iter().map(|l| l.lb_endpoints.len()).sum())
                    }
                    _ => None,
                };
            }
            _ => {}
        }
        Ok(())
    }
}

/// One ADS variant as this driver runs it.
pub trait Proto: Send + 'static {
    type Req: Send + 'static;
    type Resp: Send + 'static;
    fn create(node: Node) -> Self;
    fn start(&mut self) -> Vec<Self::Req>;
    fn handle(&mut self, r: Self::Resp, c: &mut (dyn Consumer + Send)) -> Outcome<Self::Req>;
    fn open(
        client: &mut Grpc,
        requests: ReceiverStream<Self::Req>,
    ) -> impl Future<Output = Result<tonic::Streaming<Self::Resp>, tonic::Status>> + Send;
}

impl Proto for SotwClient {
    type Req = DiscoveryRequest;
    type Resp = DiscoveryResponse;
    fn create(node: Node) -> Self {
        SotwClient::new(node)
    }
    fn start(&mut self) -> Vec<DiscoveryRequest> {
        self.start_stream()
    }
    fn handle(
        &mut self,
        r: DiscoveryResponse,
        c: &mut (dyn Consumer + Send),
    ) -> Outcome<DiscoveryRequest> {
        self.on_response(r, c)
    }
    async fn open(
        client: &mut Grpc,
        requests: ReceiverStream<DiscoveryRequest>,
    ) -> Result<tonic::Streaming<DiscoveryResponse>, tonic::Status> {
        Ok(client
            .stream_aggregated_resources(requests)
            .await?
            .into_inner())
    }
}

impl Proto for DeltaClient {
    type Req = DeltaDiscoveryRequest;
    type Resp = DeltaDiscoveryResponse;
    fn create(node: Node) -> Self {
        DeltaClient::new(node)
    }
    fn start(&mut self) -> Vec<DeltaDiscoveryRequest> {
        self.start_stream()
    }
    fn handle(
        &mut self,
        r: DeltaDiscoveryResponse,
        c: &mut (dyn Consumer + Send),
    ) -> Outcome<DeltaDiscoveryRequest> {
        self.on_response(r, c)
    }
    async fn open(
        client: &mut Grpc,
        requests: ReceiverStream<DeltaDiscoveryRequest>,
    ) -> Result<tonic::Streaming<DeltaDiscoveryResponse>, tonic::Status> {
        Ok(client
            .delta_aggregated_resources(requests)
            .await?
            .into_inner())
    }
}

/// Connects and opens the stream (retrying until `connect_by`: the control plane may still be
/// starting), then runs one ADS stream until it ends. No reconnect: a dropped stream would hide a
/// failure, so it is reported.
pub async fn run<P: Proto>(
    index: usize,
    endpoint: String,
    node: Node,
    probe: Probe,
    board: Arc<Board>,
    connect_by: Instant,
) {
    let error = match stream::<P>(index, &endpoint, node, probe, &board, connect_by).await {
        Ok(()) => "the server closed the stream".to_owned(),
        Err(e) => e,
    };
    board.slot(index).error = Some(error);
    board.notify.notify_one();
}

async fn connect(endpoint: &str, connect_by: Instant) -> Result<Channel, String> {
    let ep = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| format!("bad endpoint {endpoint}: {e}"))?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true);
    loop {
        match ep.connect().await {
            Ok(ch) => return Ok(ch),
            Err(e) if Instant::now() >= connect_by => {
                return Err(format!("cannot connect to {endpoint}: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

async fn stream<P: Proto>(
    index: usize,
    endpoint: &str,
    node: Node,
    probe: Probe,
    board: &Board,
    connect_by: Instant,
) -> Result<(), String> {
    let channel = connect(endpoint, connect_by).await?;
    let mut grpc = Grpc::new(channel).max_decoding_message_size(MAX_MESSAGE);
    let mut proto = P::create(node);
    let mut reader = Reader {
        probe,
        v1_weight: None,
        endpoints: None,
    };
    let (tx, rx) = mpsc::channel(QUEUE);
    for req in proto.start() {
        tx.send(req)
            .await
            .map_err(|_| "request queue closed".to_owned())?;
    }
    // Opening waits as long as the phase may (the first run of a fresh bench process spends seconds
    // faulting in the clients' memory, and 200 streams open at once).
    let mut responses = tokio::time::timeout_at(
        connect_by
            .max(Instant::now() + Duration::from_secs(10))
            .into(),
        P::open(&mut grpc, ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| "opening the ADS stream timed out".to_owned())?
    .map_err(|s| format!("opening the ADS stream: {s}"))?;
    loop {
        let response = match responses.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return Ok(()),
            Err(s) => return Err(format!("stream error: {s}")),
        };
        let started = Instant::now();
        let outcome = proto.handle(response, &mut reader);
        let busy = started.elapsed();
        for req in outcome.requests {
            tokio::time::timeout(SEND_TIMEOUT, tx.send(req))
                .await
                .map_err(|_| "the server did not read our requests".to_owned())?
                .map_err(|_| "request queue closed".to_owned())?;
        }
        // The ACK is queued: this is when the proxy has the config.
        let now = Instant::now();
        {
            let mut slot = board.slot(index);
            slot.responses += 1;
            slot.busy += busy;
            match &outcome.event {
                Event::Accepted {
                    ty,
                    version,
                    resources,
                } => {
                    slot.acked.insert(*ty, version.clone());
                    slot.held.insert(*ty, *resources);
                    match ty {
                        ResourceType::Route | ResourceType::VirtualHost => {
                            if let Some(w) = reader.v1_weight
                                && slot.route_probe.map(|(old, _)| old) != Some(w)
                            {
                                slot.route_probe = Some((w, now));
                            }
                        }
                        ResourceType::Endpoints => {
                            if let Some(n) = reader.endpoints
                                && slot.endpoints_probe.map(|(old, _)| old) != Some(n)
                            {
                                slot.endpoints_probe = Some((n, now));
                            }
                        }
                        _ => {}
                    }
                }
                Event::Rejected { message, .. } => {
                    slot.nacks += 1;
                    slot.last_nack = Some(message.clone());
                }
                Event::Ignored { .. } | Event::Nothing => {}
            }
            if outcome.initial_config_complete {
                slot.ready_at = Some(now);
            }
        }
        board.notify.notify_one();
    }
}
