//! Static system descriptions: services, operations, the calls each operation makes, and the
//! endpoints traffic enters by. [`World::shop`] is a hand-made shop; [`World::random`] grows large
//! layered worlds from a seed.

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::DatasetError;
use crate::truth::{EdgeTruth, GraphTruth, NodeTruth};

/// A lognormal distribution of a time, given by its median and the standard deviation of its log.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogNormal {
    /// The median, in milliseconds (`> 0`).
    pub median_ms: f64,
    /// The standard deviation of `ln(time)` (`>= 0`; 0 is a constant time).
    pub sigma: f64,
}

impl LogNormal {
    /// A lognormal with this median (ms) and log standard deviation.
    pub const fn new(median_ms: f64, sigma: f64) -> Self {
        LogNormal { median_ms, sigma }
    }
}

/// How an operation is entered: by a synchronous call, or by a message from a queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub enum EntryKind {
    /// A SERVER span (an RPC or HTTP handler).
    Server,
    /// A CONSUMER span reading from the named queue; callers reach it with a PRODUCER span.
    Consumer {
        /// The queue (`messaging.destination.name`).
        queue: String,
    },
}

/// What a call reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Callee {
    /// An instrumented operation (index into [`World::operations`]).
    Operation(usize),
    /// An uninstrumented peer (index into [`World::peers`]): a virtual node of the graph.
    Peer(usize),
}

/// One call site: an operation calls `callee`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Call {
    /// What is called.
    pub callee: Callee,
    /// The name of the CLIENT (or PRODUCER) span.
    pub span_name: String,
    /// The client gives up after this long (the client span ends with an error; the server goes on).
    pub timeout_ms: Option<f64>,
    /// Further attempts after a failed one (each attempt is its own CLIENT span).
    pub retries: u32,
    /// The caller survives this call failing.
    pub fallback: bool,
    /// Calls of one operation with the same group overlap in time; `None` runs alone, in order.
    pub parallel_group: Option<u32>,
    /// The probability that the call is made at all on an invocation (`1.0`: always).
    pub probability: f64,
}

/// An instrumented operation of a service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Operation {
    /// The service it belongs to.
    pub service: String,
    /// The entry (SERVER or CONSUMER) span name: the operation's name in the graph.
    pub name: String,
    /// How it is entered.
    pub entry: EntryKind,
    /// Its own work (the span's duration minus its calls), per invocation.
    pub self_time: LogNormal,
    /// The probability that it fails by itself on an invocation.
    pub error_rate: f64,
    /// An INTERNAL span inside the entry span that wraps all calls (a handler), if any.
    pub handler: Option<String>,
    /// `http.route` recorded on the entry span, if any.
    pub http_route: Option<String>,
    /// `rpc.method` recorded on the entry span, if any.
    pub rpc_method: Option<String>,
    /// The calls it makes, in order.
    pub calls: Vec<Call>,
}

/// The nature of an uninstrumented peer; decides which attribute names it in written traces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerKind {
    /// A database (`db.system`).
    Database,
    /// A cache (`db.system`).
    Cache,
    /// A message queue with no instrumented consumer (`messaging.destination.name`, PRODUCER spans).
    Queue,
    /// A third-party API (`peer.service`).
    External,
}

/// An uninstrumented peer: it records no spans, so only its callers' CLIENT spans show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Peer {
    /// Its name, the `peer` of the spans calling it and its node id.
    pub name: String,
    /// What it is.
    pub kind: PeerKind,
    /// Its response time as the caller sees it.
    pub latency: LogNormal,
    /// The probability that a call to it fails.
    pub error_rate: f64,
}

/// A root operation and its share of the traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    /// Index into [`World::operations`].
    pub operation: usize,
    /// Relative weight in the traffic mix (`> 0`).
    pub weight: f64,
}

/// The attribute a writer uses to name a span's peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PeerAttribute {
    /// `peer.service` (instrumented services, third-party APIs; the default).
    PeerService,
    /// `db.system` (databases, caches).
    DbSystem,
    /// `messaging.destination.name` (queues).
    MessagingDestination,
}

impl PeerAttribute {
    /// The attribute key.
    pub fn key(self) -> &'static str {
        match self {
            PeerAttribute::PeerService => "peer.service",
            PeerAttribute::DbSystem => "db.system",
            PeerAttribute::MessagingDestination => "messaging.destination.name",
        }
    }
}

/// A static system description with known ground truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct World {
    /// A short name (`shop`, `random-<seed>`).
    pub name: String,
    /// The instrumented services.
    pub services: Vec<String>,
    /// Every instrumented operation.
    pub operations: Vec<Operation>,
    /// Every uninstrumented peer.
    pub peers: Vec<Peer>,
    /// The root operations and the traffic mix.
    pub endpoints: Vec<Endpoint>,
}

/// The node id of an instrumented operation: `"<service> <operation>"`.
pub fn node_id(service: &str, operation: &str) -> String {
    format!("{service} {operation}")
}

/// Parameters of [`World::random`]. Unchecked: [`RandomWorldParams::check`] (called by
/// `World::random`) says which one is wrong and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RandomWorldParams {
    /// Instrumented services (`>= depth`).
    pub services: usize,
    /// Operations per service (`>= 1`).
    pub operations_per_service: usize,
    /// Most calls one operation makes (`>= 1`).
    pub max_fan_out: usize,
    /// Layers of the DAG (`>= 1`); services of layer `l` only call layers `> l`, so there is no cycle.
    pub depth: usize,
    /// Share of calls that go to uninstrumented peers (`[0, 1]`).
    pub virtual_share: f64,
    /// Uninstrumented peers (`>= 1` when `virtual_share > 0`).
    pub peers: usize,
    /// Endpoints, taken from the first layer's operations (`>= 1`).
    pub endpoints: usize,
}

impl Default for RandomWorldParams {
    fn default() -> Self {
        RandomWorldParams {
            services: 40,
            operations_per_service: 4,
            max_fan_out: 4,
            depth: 5,
            virtual_share: 0.2,
            peers: 8,
            endpoints: 6,
        }
    }
}

impl RandomWorldParams {
    /// Checks every parameter; the error names the first bad one.
    pub fn check(&self) -> Result<(), DatasetError> {
        let bad = |param: &str, reason: String| {
            Err(DatasetError::InvalidParam {
                param: param.to_string(),
                reason,
            })
        };
        if self.depth == 0 {
            return bad("depth", "must be at least 1".into());
        }
        if self.services < self.depth {
            return bad(
                "services",
                format!(
                    "{} services cannot fill {} layers",
                    self.services, self.depth
                ),
            );
        }
        if self.operations_per_service == 0 {
            return bad("operations_per_service", "must be at least 1".into());
        }
        if self.max_fan_out == 0 {
            return bad("max_fan_out", "must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.virtual_share) {
            return bad(
                "virtual_share",
                format!("{} is not within [0, 1]", self.virtual_share),
            );
        }
        if self.virtual_share > 0.0 && self.peers == 0 {
            return bad("peers", "must be at least 1 when virtual_share > 0".into());
        }
        let first_layer_ops =
            self.layer_sizes().first().copied().unwrap_or(0) * self.operations_per_service;
        if self.endpoints == 0 || self.endpoints > first_layer_ops {
            return bad(
                "endpoints",
                format!("must be within 1..={first_layer_ops} (the first layer's operations)"),
            );
        }
        if self.services > 100_000 || self.operations_per_service > 1000 || self.max_fan_out > 64 {
            return bad(
                "services",
                "world too large (services <= 100000, operations_per_service <= 1000, max_fan_out <= 64)".into(),
            );
        }
        Ok(())
    }

    /// Services per layer: the first layer is the smallest (entry services), the rest share evenly.
    /// How many endpoints these parameters allow at most (the first layer's operations).
    pub fn max_endpoints(&self) -> usize {
        self.layer_sizes().first().copied().unwrap_or(0) * self.operations_per_service
    }

    fn layer_sizes(&self) -> Vec<usize> {
        if self.depth == 0 {
            return Vec::new();
        }
        if self.depth == 1 {
            return vec![self.services];
        }
        let first = (self.services / (2 * self.depth)).max(1);
        let rest = self.services - first;
        let layers = self.depth - 1;
        let mut sizes = vec![first];
        for l in 0..layers {
            sizes.push(rest / layers + usize::from(l < rest % layers));
        }
        sizes
    }
}

impl World {
    /// Checks that indices are in range, probabilities and weights make sense, every operation's
    /// service is listed, and the call graph has no cycle.
    pub fn validate(&self) -> Result<(), DatasetError> {
        let bad = |param: String, reason: String| Err(DatasetError::InvalidParam { param, reason });
        let prob = |p: f64| (0.0..=1.0).contains(&p);
        let lat = |l: &LogNormal| {
            l.median_ms.is_finite() && l.median_ms > 0.0 && l.sigma.is_finite() && l.sigma >= 0.0
        };
        if self.endpoints.is_empty() {
            return bad(
                "endpoints".into(),
                "a world needs at least one endpoint".into(),
            );
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            if e.operation >= self.operations.len() {
                return bad(
                    format!("endpoints[{i}].operation"),
                    "no such operation".into(),
                );
            }
            if !(e.weight.is_finite() && e.weight > 0.0) {
                return bad(format!("endpoints[{i}].weight"), "must be > 0".into());
            }
        }
        for (i, p) in self.peers.iter().enumerate() {
            if !lat(&p.latency) || !prob(p.error_rate) {
                return bad(
                    format!("peers[{i}] ({})", p.name),
                    "latency median must be > 0, sigma >= 0, error_rate within [0, 1]".into(),
                );
            }
        }
        let services: std::collections::HashSet<&str> =
            self.services.iter().map(String::as_str).collect();
        for (i, op) in self.operations.iter().enumerate() {
            let at = || format!("operations[{i}] ({} {})", op.service, op.name);
            if !services.contains(op.service.as_str()) {
                return bad(at(), format!("service {:?} is not in services", op.service));
            }
            if !lat(&op.self_time) || !prob(op.error_rate) {
                return bad(
                    at(),
                    "self_time median must be > 0, sigma >= 0, error_rate within [0, 1]".into(),
                );
            }
            for (j, c) in op.calls.iter().enumerate() {
                let ok_target = match c.callee {
                    Callee::Operation(o) => o < self.operations.len(),
                    Callee::Peer(p) => p < self.peers.len(),
                };
                if !ok_target {
                    return bad(
                        format!("{}.calls[{j}]", at()),
                        "callee index out of range".into(),
                    );
                }
                if !prob(c.probability)
                    || c.timeout_ms.is_some_and(|t| !(t.is_finite() && t > 0.0))
                    || c.retries > 100
                {
                    return bad(
                        format!("{}.calls[{j}]", at()),
                        "probability within [0, 1], timeout_ms > 0, retries <= 100".into(),
                    );
                }
            }
        }
        // No cycle: depth-first search with colours.
        let mut colour = vec![0u8; self.operations.len()];
        for start in 0..self.operations.len() {
            if colour.get(start) != Some(&0) {
                continue;
            }
            let mut stack: Vec<(usize, usize)> = vec![(start, 0)];
            if let Some(c) = colour.get_mut(start) {
                *c = 1;
            }
            while let Some(&(node, next)) = stack.last() {
                let calls = self
                    .operations
                    .get(node)
                    .map(|o| o.calls.as_slice())
                    .unwrap_or(&[]);
                if let Some(call) = calls.get(next) {
                    if let Some(top) = stack.last_mut() {
                        top.1 += 1;
                    }
                    if let Callee::Operation(o) = call.callee {
                        match colour.get(o) {
                            Some(1) => {
                                return bad(
                                    format!("operations[{node}].calls"),
                                    "the call graph has a cycle (generated traces would never end)"
                                        .into(),
                                )
                            }
                            Some(0) => {
                                if let Some(c) = colour.get_mut(o) {
                                    *c = 1;
                                }
                                stack.push((o, 0));
                            }
                            _ => {}
                        }
                    }
                } else {
                    if let Some(c) = colour.get_mut(node) {
                        *c = 2;
                    }
                    stack.pop();
                }
            }
        }
        Ok(())
    }

    /// The attribute writers should use for each peer name: `db.system` for databases and caches,
    /// `messaging.destination.name` for queues (also the queues of instrumented consumers); names
    /// not listed (instrumented services, third-party APIs) use `peer.service`.
    pub fn peer_attributes(&self) -> BTreeMap<String, PeerAttribute> {
        let mut m = BTreeMap::new();
        for p in &self.peers {
            let a = match p.kind {
                PeerKind::Database | PeerKind::Cache => PeerAttribute::DbSystem,
                PeerKind::Queue => PeerAttribute::MessagingDestination,
                PeerKind::External => PeerAttribute::PeerService,
            };
            m.insert(p.name.clone(), a);
        }
        for op in &self.operations {
            if let EntryKind::Consumer { queue } = &op.entry {
                m.insert(queue.clone(), PeerAttribute::MessagingDestination);
            }
        }
        m
    }

    /// The graph id of a call's callee.
    pub(crate) fn callee_id(&self, callee: Callee) -> String {
        match callee {
            Callee::Operation(o) => self
                .operations
                .get(o)
                .map(|op| node_id(&op.service, &op.name))
                .unwrap_or_default(),
            Callee::Peer(p) => self
                .peers
                .get(p)
                .map(|p| p.name.clone())
                .unwrap_or_default(),
        }
    }

    /// True when the call overlaps with another call of the same operation.
    pub(crate) fn is_parallel(op: &Operation, call: &Call) -> bool {
        call.parallel_group.is_some_and(|g| {
            op.calls
                .iter()
                .filter(|c| c.parallel_group == Some(g))
                .count()
                > 1
        })
    }

    /// Every node and edge that could occur (counts are zero): the upper bound of what traces show.
    pub fn static_truth(&self) -> GraphTruth {
        let mut t = GraphTruth::default();
        let endpoint = |i: usize| self.endpoints.iter().any(|e| e.operation == i);
        for (i, op) in self.operations.iter().enumerate() {
            let id = node_id(&op.service, &op.name);
            t.nodes.insert(
                id.clone(),
                NodeTruth::operation(id, &op.service, &op.name, endpoint(i)),
            );
        }
        for p in &self.peers {
            t.nodes.insert(p.name.clone(), NodeTruth::peer(&p.name));
        }
        for op in &self.operations {
            let from = node_id(&op.service, &op.name);
            for c in &op.calls {
                let to = self.callee_id(c.callee);
                t.edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to.clone())
                    .or_insert_with(|| EdgeTruth::from_call(self, op, c, from.clone(), to))
                    .add_site(c);
            }
        }
        t
    }

    /// A shop of 13 instrumented services (frontend, auth, cart, catalog, checkout, payment,
    /// shipping, currency, recommendation, ad, email, inventory, fulfillment), a `postgres`
    /// database, a `redis` cache, a third-party `stripe` API, an `orders` queue consumed by `email`,
    /// a `shipments` queue consumed by `fulfillment`, and an `order-analytics` queue nobody
    /// instrumented consumes. It has retries, timeouts, fallbacks, parallel fan-out, optional calls
    /// and INTERNAL handler spans.
    pub fn shop() -> World {
        let mut b = Builder::default();
        let postgres = b.peer(
            "postgres",
            PeerKind::Database,
            LogNormal::new(2.0, 0.6),
            0.002,
        );
        let redis = b.peer("redis", PeerKind::Cache, LogNormal::new(0.3, 0.4), 0.001);
        let stripe = b.peer(
            "stripe",
            PeerKind::External,
            LogNormal::new(120.0, 0.5),
            0.01,
        );
        let analytics = b.peer(
            "order-analytics",
            PeerKind::Queue,
            LogNormal::new(0.8, 0.3),
            0.0,
        );

        let lat = LogNormal::new;
        // Leaves first, so callers can refer to them.
        let ads = b.op("ad", "GetAds", lat(4.0, 0.5), 0.03, None);
        let cur_list = b.op(
            "currency",
            "GetSupportedCurrencies",
            lat(1.0, 0.3),
            0.001,
            None,
        );
        let cur_conv = b.op("currency", "Convert", lat(1.5, 0.3), 0.002, None);
        let quote = b.op("shipping", "GetQuote", lat(6.0, 0.6), 0.02, None);
        let fulfil = b.consumer(
            "fulfillment",
            "shipments process",
            "shipments",
            lat(15.0, 0.5),
            0.01,
            Some("PackOrder"),
        );
        b.call(
            fulfil,
            Callee::Peer(postgres),
            "UPDATE orders",
            CallOpts::default(),
        );
        let ship = b.op("shipping", "ShipOrder", lat(8.0, 0.5), 0.01, None);
        b.call(
            ship,
            Callee::Peer(postgres),
            "INSERT shipments",
            CallOpts::default(),
        );
        b.call(
            ship,
            Callee::Operation(fulfil),
            "shipments publish",
            CallOpts::default(),
        );
        let stock = b.op("inventory", "CheckStock", lat(2.0, 0.4), 0.005, None);
        b.call(
            stock,
            Callee::Peer(postgres),
            "SELECT stock",
            CallOpts::default(),
        );
        let reserve = b.op("inventory", "Reserve", lat(3.0, 0.4), 0.01, None);
        b.call(
            reserve,
            Callee::Peer(postgres),
            "UPDATE stock",
            CallOpts {
                retries: 1,
                ..CallOpts::default()
            },
        );
        let verify = b.op("auth", "Verify", lat(1.0, 0.4), 0.002, None);
        b.call(
            verify,
            Callee::Peer(redis),
            "GET session",
            CallOpts {
                timeout_ms: Some(50.0),
                ..CallOpts::default()
            },
        );
        b.call(
            verify,
            Callee::Peer(postgres),
            "SELECT users",
            CallOpts {
                probability: 0.2,
                ..CallOpts::default()
            },
        );
        let list = b.op(
            "catalog",
            "ListProducts",
            lat(3.0, 0.5),
            0.005,
            Some("ProductCache.lookup"),
        );
        b.call(
            list,
            Callee::Peer(redis),
            "GET products",
            CallOpts {
                fallback: true,
                timeout_ms: Some(20.0),
                ..CallOpts::default()
            },
        );
        b.call(
            list,
            Callee::Peer(postgres),
            "SELECT products",
            CallOpts {
                probability: 0.3,
                ..CallOpts::default()
            },
        );
        let get = b.op("catalog", "GetProduct", lat(2.0, 0.4), 0.005, None);
        b.call(
            get,
            Callee::Peer(postgres),
            "SELECT products",
            CallOpts::default(),
        );
        let recs = b.op(
            "recommendation",
            "ListRecommendations",
            lat(8.0, 0.6),
            0.01,
            None,
        );
        b.call(
            recs,
            Callee::Operation(list),
            "ListProducts",
            CallOpts {
                timeout_ms: Some(300.0),
                ..CallOpts::default()
            },
        );
        let cart_get = b.op("cart", "GetCart", lat(1.0, 0.3), 0.003, None);
        b.call(
            cart_get,
            Callee::Peer(redis),
            "HGETALL cart",
            CallOpts::default(),
        );
        let cart_add = b.op(
            "cart",
            "AddItem",
            lat(1.5, 0.3),
            0.003,
            Some("CartService.add"),
        );
        b.call(
            cart_add,
            Callee::Operation(stock),
            "CheckStock",
            CallOpts {
                timeout_ms: Some(200.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            cart_add,
            Callee::Peer(redis),
            "HSET cart",
            CallOpts::default(),
        );
        let cart_empty = b.op("cart", "EmptyCart", lat(1.0, 0.3), 0.003, None);
        b.call(
            cart_empty,
            Callee::Peer(redis),
            "DEL cart",
            CallOpts::default(),
        );
        let charge = b.op(
            "payment",
            "Charge",
            lat(5.0, 0.5),
            0.02,
            Some("PaymentService.charge"),
        );
        b.call(
            charge,
            Callee::Peer(stripe),
            "POST /v1/charges",
            CallOpts {
                timeout_ms: Some(1500.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            charge,
            Callee::Peer(postgres),
            "INSERT payments",
            CallOpts::default(),
        );
        let email = b.consumer(
            "email",
            "orders process",
            "orders",
            lat(20.0, 0.6),
            0.01,
            Some("render confirmation"),
        );
        b.call(
            email,
            Callee::Peer(postgres),
            "SELECT orders",
            CallOpts::default(),
        );
        let place = b.op(
            "checkout",
            "PlaceOrder",
            lat(10.0, 0.5),
            0.005,
            Some("CheckoutService.placeOrder"),
        );
        b.call(
            place,
            Callee::Operation(cart_get),
            "GetCart",
            CallOpts {
                timeout_ms: Some(200.0),
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(get),
            "GetProduct",
            CallOpts::default(),
        );
        b.call(
            place,
            Callee::Operation(cur_conv),
            "Convert",
            CallOpts {
                group: Some(1),
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(quote),
            "GetQuote",
            CallOpts {
                group: Some(1),
                fallback: true,
                timeout_ms: Some(100.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(reserve),
            "Reserve",
            CallOpts {
                group: Some(1),
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(charge),
            "Charge",
            CallOpts {
                timeout_ms: Some(2000.0),
                retries: 2,
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(ship),
            "ShipOrder",
            CallOpts {
                timeout_ms: Some(500.0),
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(cart_empty),
            "EmptyCart",
            CallOpts {
                fallback: true,
                ..CallOpts::default()
            },
        );
        b.call(
            place,
            Callee::Operation(email),
            "orders publish",
            CallOpts::default(),
        );
        b.call(
            place,
            Callee::Peer(analytics),
            "order-analytics publish",
            CallOpts {
                fallback: true,
                ..CallOpts::default()
            },
        );

        let home = b.http_op("GET /", lat(3.0, 0.4), Some("render home"));
        b.call(
            home,
            Callee::Operation(verify),
            "Verify",
            CallOpts {
                timeout_ms: Some(100.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            home,
            Callee::Operation(list),
            "ListProducts",
            CallOpts {
                group: Some(1),
                ..CallOpts::default()
            },
        );
        b.call(
            home,
            Callee::Operation(recs),
            "ListRecommendations",
            CallOpts {
                group: Some(1),
                fallback: true,
                timeout_ms: Some(400.0),
                ..CallOpts::default()
            },
        );
        b.call(
            home,
            Callee::Operation(ads),
            "GetAds",
            CallOpts {
                group: Some(1),
                fallback: true,
                timeout_ms: Some(50.0),
                probability: 0.8,
                ..CallOpts::default()
            },
        );
        b.call(
            home,
            Callee::Operation(cur_list),
            "GetSupportedCurrencies",
            CallOpts {
                group: Some(1),
                fallback: true,
                ..CallOpts::default()
            },
        );
        let product = b.http_op("GET /product/{id}", lat(2.5, 0.4), None);
        b.call(
            product,
            Callee::Operation(get),
            "GetProduct",
            CallOpts {
                timeout_ms: Some(300.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            product,
            Callee::Operation(cur_conv),
            "Convert",
            CallOpts {
                group: Some(2),
                ..CallOpts::default()
            },
        );
        b.call(
            product,
            Callee::Operation(recs),
            "ListRecommendations",
            CallOpts {
                group: Some(2),
                fallback: true,
                timeout_ms: Some(400.0),
                ..CallOpts::default()
            },
        );
        b.call(
            product,
            Callee::Operation(ads),
            "GetAds",
            CallOpts {
                group: Some(2),
                fallback: true,
                timeout_ms: Some(50.0),
                probability: 0.5,
                ..CallOpts::default()
            },
        );
        let add = b.http_op("POST /cart", lat(2.0, 0.3), None);
        b.call(
            add,
            Callee::Operation(verify),
            "Verify",
            CallOpts {
                timeout_ms: Some(100.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            add,
            Callee::Operation(cart_add),
            "AddItem",
            CallOpts {
                timeout_ms: Some(500.0),
                ..CallOpts::default()
            },
        );
        let checkout = b.http_op("POST /checkout", lat(4.0, 0.4), Some("CheckoutHandler"));
        b.call(
            checkout,
            Callee::Operation(verify),
            "Verify",
            CallOpts {
                timeout_ms: Some(100.0),
                retries: 1,
                ..CallOpts::default()
            },
        );
        b.call(
            checkout,
            Callee::Operation(place),
            "PlaceOrder",
            CallOpts {
                timeout_ms: Some(3000.0),
                ..CallOpts::default()
            },
        );

        b.endpoint(home, 0.5);
        b.endpoint(product, 0.25);
        b.endpoint(add, 0.15);
        b.endpoint(checkout, 0.10);
        b.finish("shop")
    }

    /// A seeded random layered world (see [`RandomWorldParams`]); the same seed and parameters give
    /// the same world.
    pub fn random(seed: u64, params: RandomWorldParams) -> Result<World, DatasetError> {
        params.check()?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut b = Builder::default();
        let kinds = [
            PeerKind::Database,
            PeerKind::Cache,
            PeerKind::Queue,
            PeerKind::External,
        ];
        let mut peers = Vec::with_capacity(params.peers);
        for i in 0..params.peers {
            let kind = kinds[rng.gen_range(0..kinds.len())];
            let (prefix, median) = match kind {
                PeerKind::Database => ("db", 2.0),
                PeerKind::Cache => ("cache", 0.3),
                PeerKind::Queue => ("queue", 0.8),
                PeerKind::External => ("api", 60.0),
            };
            let err = if kind == PeerKind::Queue {
                0.0
            } else {
                rng.gen_range(0.0..0.01)
            };
            peers.push(b.peer(
                &format!("{prefix}-{i}"),
                kind,
                LogNormal::new(median, rng.gen_range(0.2..0.7)),
                err,
            ));
        }
        // Layered services, each with its operations.
        let mut layers: Vec<Vec<usize>> = Vec::new(); // operation indices per layer
        let mut svc = 0usize;
        for (l, size) in params.layer_sizes().into_iter().enumerate() {
            let mut ops = Vec::new();
            for _ in 0..size {
                let service = format!("svc-{svc:04}");
                svc += 1;
                for o in 0..params.operations_per_service {
                    let name = if l == 0 {
                        format!("GET /api/{service}/{o}")
                    } else {
                        format!("op-{o}")
                    };
                    let self_time =
                        LogNormal::new(rng.gen_range(0.5..10.0), rng.gen_range(0.2..0.8));
                    let err = if rng.gen_bool(0.3) {
                        rng.gen_range(0.0..0.03)
                    } else {
                        0.0
                    };
                    let handler = rng.gen_bool(0.25).then(|| format!("{name} handler"));
                    ops.push(b.op(&service, &name, self_time, err, handler.as_deref()));
                }
            }
            layers.push(ops);
        }
        for l in 0..layers.len() {
            let deeper: Vec<usize> = layers.iter().skip(l + 1).flatten().copied().collect();
            let callers = layers.get(l).cloned().unwrap_or_default();
            for caller in callers {
                let fan = rng.gen_range(0..=params.max_fan_out);
                let mut group = 0u32;
                for _ in 0..fan {
                    let to_peer = !peers.is_empty()
                        && (deeper.is_empty() || rng.gen_bool(params.virtual_share));
                    let callee = if to_peer {
                        Callee::Peer(peers[rng.gen_range(0..peers.len())])
                    } else if let Some(&o) = deeper.get(rng.gen_range(0..deeper.len().max(1))) {
                        Callee::Operation(o)
                    } else {
                        continue;
                    };
                    let name = b.world_callee_name(callee);
                    if rng.gen_bool(0.3) {
                        group += 1;
                    }
                    let opts = CallOpts {
                        timeout_ms: rng.gen_bool(0.5).then(|| rng.gen_range(50.0..2000.0)),
                        retries: if rng.gen_bool(0.25) {
                            rng.gen_range(1..=2)
                        } else {
                            0
                        },
                        fallback: rng.gen_bool(0.2),
                        group: (group > 0 && rng.gen_bool(0.6)).then_some(group),
                        probability: if rng.gen_bool(0.2) {
                            rng.gen_range(0.1..0.9)
                        } else {
                            1.0
                        },
                    };
                    b.call(caller, callee, &name, opts);
                }
            }
        }
        for &op in layers
            .first()
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .take(params.endpoints)
        {
            b.endpoint(op, rng.gen_range(0.1..1.0));
        }
        let world = b.finish(&format!("random-{seed}"));
        world.validate()?;
        Ok(world)
    }
}

/// The options of one call in the builders.
#[derive(Clone, Copy)]
struct CallOpts {
    timeout_ms: Option<f64>,
    retries: u32,
    fallback: bool,
    group: Option<u32>,
    probability: f64,
}

impl Default for CallOpts {
    fn default() -> Self {
        CallOpts {
            timeout_ms: None,
            retries: 0,
            fallback: false,
            group: None,
            probability: 1.0,
        }
    }
}

/// Builds worlds by name: operations, peers and calls get their indices as they are added.
#[derive(Default)]
struct Builder {
    world: Vec<Operation>,
    services: Vec<String>,
    known: std::collections::HashSet<String>,
    peers: Vec<Peer>,
    endpoints: Vec<Endpoint>,
}

impl Builder {
    fn peer(&mut self, name: &str, kind: PeerKind, latency: LogNormal, error_rate: f64) -> usize {
        self.peers.push(Peer {
            name: name.into(),
            kind,
            latency,
            error_rate,
        });
        self.peers.len() - 1
    }

    fn add(&mut self, op: Operation) -> usize {
        // A set beside the list: a world of 100,000 services must not compare every name.
        if self.known.insert(op.service.clone()) {
            self.services.push(op.service.clone());
        }
        self.world.push(op);
        self.world.len() - 1
    }

    fn op(
        &mut self,
        service: &str,
        name: &str,
        self_time: LogNormal,
        error_rate: f64,
        handler: Option<&str>,
    ) -> usize {
        self.add(Operation {
            service: service.into(),
            name: name.into(),
            entry: EntryKind::Server,
            self_time,
            error_rate,
            handler: handler.map(str::to_string),
            http_route: None,
            rpc_method: Some(name.into()),
            calls: Vec::new(),
        })
    }

    fn http_op(&mut self, name: &str, self_time: LogNormal, handler: Option<&str>) -> usize {
        let route = name.split_once(' ').map(|(_, r)| r.to_string());
        self.add(Operation {
            service: "frontend".into(),
            name: name.into(),
            entry: EntryKind::Server,
            self_time,
            error_rate: 0.001,
            handler: handler.map(str::to_string),
            http_route: route,
            rpc_method: None,
            calls: Vec::new(),
        })
    }

    fn consumer(
        &mut self,
        service: &str,
        name: &str,
        queue: &str,
        self_time: LogNormal,
        error_rate: f64,
        handler: Option<&str>,
    ) -> usize {
        self.add(Operation {
            service: service.into(),
            name: name.into(),
            entry: EntryKind::Consumer {
                queue: queue.into(),
            },
            self_time,
            error_rate,
            handler: handler.map(str::to_string),
            http_route: None,
            rpc_method: None,
            calls: Vec::new(),
        })
    }

    fn call(&mut self, from: usize, callee: Callee, span_name: &str, o: CallOpts) {
        if let Some(op) = self.world.get_mut(from) {
            op.calls.push(Call {
                callee,
                span_name: span_name.into(),
                timeout_ms: o.timeout_ms,
                retries: o.retries,
                fallback: o.fallback,
                parallel_group: o.group,
                probability: o.probability,
            });
        }
    }

    fn world_callee_name(&self, callee: Callee) -> String {
        match callee {
            Callee::Operation(o) => self
                .world
                .get(o)
                .map(|op| op.name.clone())
                .unwrap_or_default(),
            Callee::Peer(p) => self
                .peers
                .get(p)
                .map(|p| match p.kind {
                    PeerKind::Queue => format!("{} publish", p.name),
                    PeerKind::Database => format!("SELECT {}", p.name),
                    PeerKind::Cache => "GET".to_string(),
                    PeerKind::External => "POST".to_string(),
                })
                .unwrap_or_default(),
        }
    }

    fn endpoint(&mut self, operation: usize, weight: f64) {
        self.endpoints.push(Endpoint { operation, weight });
    }

    fn finish(self, name: &str) -> World {
        World {
            name: name.into(),
            services: self.services,
            operations: self.world,
            peers: self.peers,
            endpoints: self.endpoints,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shop_is_valid_and_rich() {
        let w = World::shop();
        w.validate().unwrap();
        assert!(w.services.len() >= 12, "{:?}", w.services);
        let db = w.peers.iter().find(|p| p.name == "postgres").unwrap();
        assert_eq!(db.kind, PeerKind::Database);
        assert!(
            w.peers.iter().any(|p| p.kind == PeerKind::Queue),
            "a queue with no consumer"
        );
        assert!(w
            .operations
            .iter()
            .any(|o| matches!(o.entry, EntryKind::Consumer { .. })));
        let calls: Vec<&Call> = w.operations.iter().flat_map(|o| &o.calls).collect();
        assert!(calls.iter().any(|c| c.retries > 0));
        assert!(calls.iter().any(|c| c.timeout_ms.is_some()));
        assert!(calls.iter().any(|c| c.fallback));
        assert!(calls.iter().any(|c| c.parallel_group.is_some()));
        assert!(calls.iter().any(|c| c.probability < 1.0));
        assert!(w.operations.iter().any(|o| o.handler.is_some()));
        let t = w.static_truth();
        assert!(t.nodes["postgres"].is_virtual);
        assert!(t.nodes["order-analytics"].is_virtual);
        assert!(t.nodes["frontend GET /"].endpoint);
        assert!(t
            .edge("checkout PlaceOrder", "email orders process")
            .is_some());
        assert!(t
            .edge("checkout PlaceOrder", "payment Charge")
            .is_some_and(|e| e.retries == 2));
        assert_eq!(
            w.peer_attributes()["orders"],
            PeerAttribute::MessagingDestination
        );
    }

    #[test]
    fn random_worlds_are_seeded_acyclic_and_checked() {
        let p = RandomWorldParams::default();
        let a = World::random(3, p.clone()).unwrap();
        let b = World::random(3, p.clone()).unwrap();
        let c = World::random(4, p.clone()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.services.len(), p.services);
        assert_eq!(a.operations.len(), p.services * p.operations_per_service);
        assert_eq!(a.endpoints.len(), p.endpoints);
        assert!(a.operations.iter().all(|o| o.calls.len() <= p.max_fan_out));
        let big = World::random(
            1,
            RandomWorldParams {
                services: 500,
                operations_per_service: 6,
                depth: 8,
                ..p.clone()
            },
        )
        .unwrap();
        assert_eq!(big.operations.len(), 3000);
        // Each service once, in the order its first operation was added.
        assert_eq!(big.services.len(), 500);
        assert_eq!(
            (&*big.services[0], &*big.services[499]),
            ("svc-0000", "svc-0499")
        );
        let mut stray = big.clone();
        stray.operations[7].service = "nowhere".into();
        let err = stray.validate().unwrap_err().to_string();
        assert!(err.contains("\"nowhere\" is not in services"), "{err}");
        for (param, bad) in [
            (
                "depth",
                RandomWorldParams {
                    depth: 0,
                    ..p.clone()
                },
            ),
            (
                "services",
                RandomWorldParams {
                    services: 2,
                    depth: 3,
                    ..p.clone()
                },
            ),
            (
                "virtual_share",
                RandomWorldParams {
                    virtual_share: 1.5,
                    ..p.clone()
                },
            ),
            (
                "endpoints",
                RandomWorldParams {
                    endpoints: 0,
                    ..p.clone()
                },
            ),
        ] {
            match World::random(1, bad) {
                Err(DatasetError::InvalidParam { param: got, .. }) => assert_eq!(got, param),
                other => panic!("{param}: {other:?}"),
            }
        }
    }

    #[test]
    fn validate_rejects_cycles() {
        let mut w = World::shop();
        // ad GetAds (index 0) calls the home page, which calls ad GetAds.
        let home = w.endpoints[0].operation;
        w.operations[0].calls.push(Call {
            callee: Callee::Operation(home),
            span_name: "loop".into(),
            timeout_ms: None,
            retries: 0,
            fallback: false,
            parallel_group: None,
            probability: 1.0,
        });
        let err = w.validate().unwrap_err();
        assert!(err.to_string().contains("cycle"), "{err}");
    }
}
