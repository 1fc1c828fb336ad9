//! The simulator's semantics on small learned models with known behaviour.

use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};
use augur_model::{ModelBuilder, View};

use crate::{simulate, FaultSpec, OpPrediction, SimOptions};

const MS: i64 = 1_000_000;

#[allow(clippy::too_many_arguments)]
fn span(
    t: u32,
    id: u8,
    parent: Option<u8>,
    service: &str,
    name: &str,
    kind: SpanKind,
    start: i64,
    end: i64,
    failed: bool,
) -> OwnedSpan {
    let mut trace_id = [0u8; 16];
    trace_id[..4].copy_from_slice(&t.to_be_bytes());
    OwnedSpan {
        trace_id,
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        service: service.into(),
        name: name.into(),
        kind: kind as u8,
        start_ns: i64::from(t) * 1000 * MS + start * MS,
        end_ns: i64::from(t) * 1000 * MS + end * MS,
        status: if failed { 2 } else { 0 },
        peer: None,
        peer_kind: Default::default(),
        http_route: None,
        rpc_method: None,
        error_type: None,
        experiment: None,
        link: None,
    }
}

/// The view of a model learned from `batch`.
fn view_of(batch: &SpanBatch) -> View {
    let mut b = ModelBuilder::default();
    b.add_batch(batch);
    b.finish().view()
}

/// `web GET /` calls `api Get` (4 ms, which fails the request when it fails) then `ads Show`
/// (3 ms, whose failures the request survives); self time 2 ms. One trace in 20 sees api fail,
/// one in 10 sees ads fail.
fn model() -> View {
    model_file().view()
}

fn model_file() -> augur_model::Model {
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..2000u32 {
        let api_fails = t % 20 == 0;
        let ads_fails = t % 10 == 5;
        let spans = [
            span(t, 1, None, "web", "GET /", Server, 0, 9, api_fails),
            span(t, 2, Some(1), "web", "api", Client, 1, 5, api_fails),
            span(t, 3, Some(2), "api", "Get", Server, 1, 5, api_fails),
            span(t, 4, Some(1), "web", "ads", Client, 5, 8, ads_fails),
            span(t, 5, Some(4), "ads", "Show", Server, 5, 8, ads_fails),
        ];
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let mut b = ModelBuilder::default();
    b.add_batch(&batch);
    b.finish()
}

fn run(view: &View, faults: &[&str]) -> Vec<OpPrediction> {
    run_all(view, faults).endpoints
}

/// The whole prediction (endpoints and every operation).
fn run_all(view: &View, faults: &[&str]) -> crate::Prediction {
    let specs: Vec<FaultSpec> = faults.iter().map(|f| f.parse().unwrap()).collect();
    let opts = SimOptions {
        requests: 2_000,
        samples: 16,
        seed: 5,
    };
    simulate(view, &specs, &opts).unwrap().0
}

#[test]
fn baseline_reproduces_what_was_learned() {
    let v = model();
    let p = &run(&v, &["ads:latency=+0ms"])[0];
    assert_eq!(p.endpoint, "web GET /");
    // Learned: 5% of requests fail (api's failures).
    assert!((p.baseline.error_rate - 0.05).abs() < 0.015, "{p:?}");
    // 9 ms end to end: 2 self + 4 + 3.
    assert!((p.baseline.p50_ms - 9.0).abs() < 0.3, "{p:?}");
    // A no-op fault predicts the baseline.
    assert!((p.predicted.error_rate.mean - p.baseline.error_rate).abs() < 1e-9);
}

#[test]
fn failures_propagate_where_they_did_and_not_where_they_were_survived() {
    let v = model();
    let api = &run(&v, &["api:down"])[0];
    assert!(api.predicted.error_rate.lo > 0.9, "{api:?}");
    let ads = &run(&v, &["ads:down"])[0];
    assert!(ads.predicted.error_rate.hi < 0.12, "{ads:?}");
    let all = run_all(&v, &["api:error=0.5"]);
    let half = &all.endpoints[0];
    let e = half.predicted.error_rate.mean;
    assert!((0.45..0.62).contains(&e), "{half:?}");
    // The target itself, as its callers see it (as under `down`): its own failures and the
    // injected half.
    let api = all.operations.iter().find(|o| o.service == "api").unwrap();
    let own = api.baseline.error_rate;
    let seen = api.predicted.error_rate.mean;
    assert!((seen - (1.0 - (1.0 - own) * 0.5)).abs() < 0.04, "{api:?}");
}

#[test]
fn latency_faults_add_to_calls_or_scale_self_time() {
    let v = model();
    // Draws without a timeout on the slowed call see the whole delay; draws where the call has a
    // timeout it never met in the traces (the unseen-timeout prior) see it cut: the interval
    // spans both, and never goes below the baseline.
    let slow = &run(&v, &["ads:latency=+100ms"])[0];
    assert!((slow.predicted.p50_ms.hi - 109.0).abs() < 1.0, "{slow:?}");
    assert!(slow.predicted.p50_ms.lo >= 9.0, "{slow:?}");
    // web's self time is 2 ms: x3 adds 4 ms, with no call involved.
    let cpu = &run(&v, &["web:latency=x3"])[0];
    assert!((cpu.predicted.p50_ms.mean - 13.0).abs() < 0.6, "{cpu:?}");
    assert!(
        cpu.predicted.p50_ms.hi - cpu.predicted.p50_ms.lo < 0.5,
        "{cpu:?}"
    );
    // Only web's calls to api, as web sees them.
    let edge = &run(&v, &["web->api:latency=+50ms"])[0];
    assert!((edge.predicted.p50_ms.hi - 59.0).abs() < 1.0, "{edge:?}");
    // Simultaneous faults add up.
    let both = &run(&v, &["ads:latency=+100ms", "api:latency=+50ms"])[0];
    assert!((both.predicted.p50_ms.hi - 159.0).abs() < 1.5, "{both:?}");
}

#[test]
fn the_same_seed_gives_the_same_prediction() {
    let v = model();
    assert_eq!(run(&v, &["api:error=0.3"]), run(&v, &["api:error=0.3"]));
}

#[test]
fn many_faults_at_once_equal_one_at_a_time() {
    let v = model();
    let opts = SimOptions {
        requests: 500,
        samples: 8,
        seed: 2,
    };
    let specs = crate::single_fault_candidates(
        &v,
        &[crate::FaultKind::Down, crate::FaultKind::AddLatencyMs(20.0)],
    );
    assert_eq!(specs.len(), 6);
    let sets: Vec<Vec<FaultSpec>> = specs.iter().map(|s| vec![s.clone()]).collect();
    let many = crate::simulate_many(&v, &sets, &opts).unwrap();
    for (set, (p, _)) in sets.iter().zip(&many) {
        let (one, _) = simulate(&v, set, &opts).unwrap();
        assert_eq!(&one, p);
    }
}

#[test]
fn a_fault_on_a_consumer_acts_on_it_not_on_its_producer() {
    use SpanKind::*;
    // `web POST /order` (3 ms) publishes a message (0.5 ms send) that `mail send` consumes.
    let mut batch = SpanBatch::new();
    for t in 0..1000u32 {
        for s in [
            span(t, 1, None, "web", "POST /order", Server, 0, 3, false),
            span(t, 2, Some(1), "web", "publish", Producer, 1, 2, false),
            span(t, 3, Some(2), "mail", "send", Consumer, 2, 6, false),
        ] {
            batch.push_owned(&s);
        }
    }
    let v = view_of(&batch);
    let all = run_all(&v, &["mail:latency=+300ms"]);
    let p = &all.endpoints[0];
    assert_eq!(p.endpoint, "web POST /order");
    assert!(p.predicted.p50_ms.hi < p.baseline.p50_ms + 0.5, "{p:?}");
    // The consumer itself finishes 300 ms later (found by a black-box test: it did not move).
    let mail = |all: &crate::Prediction| {
        all.operations
            .iter()
            .find(|o| o.endpoint == "mail send")
            .cloned()
            .unwrap()
    };
    let m = mail(&all);
    let later = m.predicted.p50_ms.mean - m.baseline.p50_ms;
    assert!((later - 300.0).abs() < 1.0, "{m:?}");
    // An error fault on it fails its messages, not the producer.
    let all = run_all(&v, &["mail:error=0.5"]);
    let m = mail(&all);
    assert!((m.predicted.error_rate.mean - 0.5).abs() < 0.05, "{m:?}");
    assert!(
        all.endpoints[0].predicted.error_rate.hi < 0.01,
        "{:?}",
        all.endpoints[0]
    );
}

/// `web GET /` calls `api Get` (4 ms; its failures fail the request, which then makes no
/// further call) and `report Make` (20 ms), in the order given.
fn ordered_model(api_first: bool) -> View {
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..2000u32 {
        let api_fails = t % 20 == 0;
        let (api, report) = if api_first { (1, 5) } else { (21, 1) };
        let mut spans = vec![
            span(t, 2, Some(1), "web", "api", Client, api, api + 4, api_fails),
            span(t, 3, Some(2), "api", "Get", Server, api, api + 4, api_fails),
        ];
        // A failed api call stops the request: when it comes first, report is never called.
        let end = if api_first && api_fails {
            6
        } else {
            let (a, b) = (report, report + 20);
            spans.push(span(t, 4, Some(1), "web", "report", Client, a, b, false));
            spans.push(span(t, 5, Some(4), "report", "Make", Server, a, b, false));
            26
        };
        spans.push(span(t, 1, None, "web", "GET /", Server, 0, end, api_fails));
        for s in &spans {
            batch.push_owned(s);
        }
    }
    view_of(&batch)
}

#[test]
fn a_failure_that_stops_the_caller_stops_only_the_calls_after_it() {
    let first = &run(&ordered_model(true), &["api:down"])[0];
    let last = &run(&ordered_model(false), &["api:down"])[0];
    for p in [first, last] {
        assert!(p.predicted.error_rate.mean > 0.9, "{p:?}");
    }
    // api first: the request fails before report is called (self time and a refused call).
    assert!(first.predicted.p50_ms.mean < 8.0, "{first:?}");
    // api last: report's 20 ms were spent before api failed.
    assert!(last.predicted.p50_ms.mean > 20.0, "{last:?}");
}

#[test]
fn retries_wait_their_learned_back_off() {
    use SpanKind::*;
    // One call in ten fails (2 ms) and is retried 10 ms later.
    let mut batch = SpanBatch::new();
    for t in 0..2000u32 {
        let retried = t % 10 == 0;
        let mut spans = Vec::new();
        let client = |id, start, end, failed| {
            let mut s = span(t, id, Some(1), "web", "api", Client, start, end, failed);
            s.peer = Some("api".into());
            s
        };
        let start = if retried {
            spans.push(client(2, 1, 3, true));
            spans.push(span(t, 5, Some(2), "api", "Get", Server, 1, 3, true));
            13
        } else {
            1
        };
        let (a, b) = (start, start + 4);
        spans.push(client(3, a, b, false));
        spans.push(span(t, 4, Some(3), "api", "Get", Server, a, b, false));
        spans.push(span(t, 1, None, "web", "GET /", Server, 0, b + 2, false));
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let view = view_of(&batch);
    let e = view.edge("web GET /", "api Get").unwrap();
    assert_eq!(e.retries, Some(1));
    assert!((e.stats.backoff_ns.quantile(0.5).unwrap() / 1e6 - 10.0).abs() < 0.5);
    // Down: refused (1 ms when never seen), the 10 ms back-off, refused again, web's 2 ms.
    let p = &run(&view, &["api:down"])[0];
    assert!(
        p.predicted.p50_ms.mean > 12.0 && p.predicted.p50_ms.mean < 16.0,
        "{p:?}"
    );
}

#[test]
fn a_model_whose_calls_fan_out_in_a_cycle_is_cut_not_hung() {
    // A hand-edited (or corrupted) model: web calls api twice per request and api calls web
    // twice back. Unchecked, one request is 2^32 calls; the per-request cap stops it.
    let mut m = model_file();
    let web_api = m
        .calls
        .iter()
        .position(|c| c.from == "web GET /" && c.to == "api Get")
        .unwrap();
    m.calls[web_api].stats.per_invocation = vec![0, 0, 2000];
    let mut back = m.calls[web_api].clone();
    back.from = "api Get".into();
    back.to = "web GET /".into();
    m.calls.push(back);
    // Nothing fails (an error anywhere would propagate up and end the request early).
    for op in &mut m.operations {
        op.errors = 0;
        op.clean_errors = 0;
        op.clean = 1 << 40;
    }
    for c in &mut m.calls {
        c.stats.attempt_errors = 0;
        c.stats.failed = 0;
        c.stats.propagated = 0;
    }
    let view = m.view();
    let specs: Vec<FaultSpec> = vec!["ads:latency=+1ms".parse().unwrap()];
    let opts = SimOptions {
        requests: 50,
        samples: 2,
        seed: 1,
    };
    let (p, events) = simulate(&view, &specs, &opts).unwrap();
    assert!(!p.endpoints.is_empty());
    // Baseline and faulted run, two draws each, 50 requests: each request stops near the cap.
    let cap = 4 * 50 * (crate::sim::MAX_EVENTS_PER_REQUEST + 256);
    assert!(
        events > 4 * 50 * 1000 && events <= cap,
        "{events} call attempts"
    );
}

#[test]
fn a_fault_on_the_entry_service_meets_its_users() {
    // Nothing calls web: its users do. Taking it down fails every request.
    let v = model();
    let down = &run(&v, &["web:down"])[0];
    assert_eq!(down.endpoint, "web GET /");
    assert!(down.predicted.error_rate.lo > 0.999, "{down:?}");
    // Half of the requests fail on top of the 5% that already did.
    let half = &run(&v, &["web:error=0.5"])[0];
    let e = half.predicted.error_rate.mean;
    assert!((e - (0.05 + 0.95 * 0.5)).abs() < 0.04, "{half:?}");
    // Its answers come 100 ms later; nothing behind it changes.
    let slow = run(&v, &["web/GET /:latency=+100ms"]);
    assert!(
        (slow[0].predicted.p50_ms.mean - 109.0).abs() < 1.0,
        "{:?}",
        slow[0]
    );
}

#[test]
fn names_holding_slashes_and_arrows_resolve() {
    // Services named `team/cart` (a namespace) and `cart->v2`; operations with '/' in them.
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..50u32 {
        let spans = [
            span(t, 1, None, "web", "GET /home", Server, 0, 9, false),
            span(t, 2, Some(1), "web", "cart", Client, 1, 4, false),
            span(t, 3, Some(2), "team/cart", "op/x", Server, 1, 4, false),
            span(t, 4, Some(1), "web", "v2", Client, 5, 8, false),
            span(t, 5, Some(4), "cart->v2", "get", Server, 5, 8, false),
            // And services `cart` and `v2`, cart calling v2: the call site `cart->v2` is
            // spelled like the service `cart->v2`.
            span(t, 6, Some(1), "web", "list", Client, 1, 8, false),
            span(t, 7, Some(6), "cart", "list", Server, 1, 8, false),
            span(t, 8, Some(7), "cart", "v2", Client, 2, 6, false),
            span(t, 9, Some(8), "v2", "get2", Server, 2, 6, false),
        ];
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let v = view_of(&batch);
    let callees = |spec: &str| -> Vec<String> {
        let f: FaultSpec = spec.parse().unwrap();
        let r = f.resolve(&v).unwrap_or_else(|e| panic!("{spec}: {e}"));
        r.callees.iter().map(|&i| v.nodes[i].id.clone()).collect()
    };
    assert_eq!(callees("team/cart:down"), ["team/cart op/x"]);
    assert_eq!(callees("team/cart/op/x:down"), ["team/cart op/x"]);
    // The whole name first (the recommender lists `cart->v2:down` as a service fault); the
    // call site by its operation.
    assert_eq!(callees("cart->v2:down"), ["cart->v2 get"]);
    let f: FaultSpec = "cart->v2:down".parse().unwrap();
    assert!(f.resolve(&v).unwrap().callers.is_none());
    assert_eq!(callees("cart/list->v2:down"), ["v2 get2"]);
    assert_eq!(callees("cart->v2/get:down"), ["cart->v2 get"]);
    assert_eq!(callees("web->cart->v2:error=0.5"), ["cart->v2 get"]);
    assert_eq!(callees("web->team/cart:error=0.5"), ["team/cart op/x"]);
    // A wrong name is still an error, naming the part.
    let f: FaultSpec = "web->cart->v3:down".parse().unwrap();
    let e = f.resolve(&v).unwrap_err().to_string();
    assert!(e.contains("cart->v3") || e.contains("v3"), "{e}");
}

#[test]
fn an_unknown_target_suggests_the_service_it_abbreviates_first() {
    // `ts-order` abbreviates `ts-order-service`; `ts-order-other-service` and the operations
    // contain it too, and come after (a black-box test found the service itself left out).
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..20u32 {
        let spans = [
            span(t, 1, None, "gw", "GET /", Server, 0, 9, false),
            span(t, 2, Some(1), "gw", "a", Client, 1, 3, false),
            span(
                t,
                3,
                Some(2),
                "ts-order-other-service",
                "list",
                Server,
                1,
                3,
                false,
            ),
            span(t, 4, Some(1), "gw", "b", Client, 4, 6, false),
            span(
                t,
                5,
                Some(4),
                "ts-order-other-service",
                "get",
                Server,
                4,
                6,
                false,
            ),
            span(t, 6, Some(1), "gw", "c", Client, 6, 8, false),
            span(
                t,
                7,
                Some(6),
                "ts-order-service",
                "list",
                Server,
                6,
                8,
                false,
            ),
        ];
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let v = view_of(&batch);
    let s = crate::fault::suggestions(&v, "ts-order");
    assert_eq!(
        s[..2],
        ["ts-order-service", "ts-order-other-service"],
        "{s:?}"
    );
}

#[test]
fn one_services_fallbacks_are_not_the_systems_habit() {
    // `web GET /` calls five widgets in parallel and survives their failures; `shop Buy`
    // calls `stock Take` in parallel, which never failed. The five sites are all one service's
    // code: the group "parallel calls to services" is not fitted on them alone, so `stock Take`
    // takes the system-wide prior (fitted on every site, of every service that has them) rather
    // than a group that is web's fallbacks (a black-box test saw checkout predicted to survive
    // an inventory outage that fails it every time).
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..200u32 {
        let mut spans = vec![span(t, 1, None, "web", "GET /", Server, 0, 10, false)];
        for (i, w) in ["w0", "w1", "w2", "w3", "w4"].into_iter().enumerate() {
            let id = 2 + 2 * i as u8;
            let failed = (t as usize + i).is_multiple_of(10);
            spans.push(span(t, id, Some(1), "web", w, Client, 1, 5, failed));
            spans.push(span(t, id + 1, Some(id), w, "get", Server, 1, 5, failed));
        }
        spans.push(span(t, 20, None, "shop", "Buy", Server, 0, 10, false));
        spans.push(span(t, 21, Some(20), "shop", "take", Client, 1, 5, false));
        spans.push(span(t, 22, Some(21), "stock", "Take", Server, 1, 5, false));
        spans.push(span(t, 23, Some(20), "shop", "price", Client, 2, 6, false));
        spans.push(span(t, 24, Some(23), "price", "Get", Server, 2, 6, false));
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let v = view_of(&batch);
    let edge = |to: &str| v.edges.iter().find(|e| e.to == to).unwrap();
    assert!(edge("w0 get").p_propagate.evidence > 0);
    let take = &edge("stock Take").p_propagate;
    assert_eq!(take.evidence, 0);
    assert_eq!(take.prior, "all", "{take:?}");
    let group = v
        .priors
        .iter()
        .find(|p| p.group == "service/parallel")
        .unwrap();
    assert_eq!(group.sites, 0, "{group:?}");
}

#[test]
fn two_call_sites_merged_into_one_keep_their_retries_apart() {
    use SpanKind::*;
    // `web GET /` calls `api Get` under one span name from two places: in even traces it
    // retries a failed attempt up to twice, in odd ones never. One attempt in five fails, and
    // a call that failed after its retries fails the request.
    let mut batch = SpanBatch::new();
    let mut state = 0x2545_f491_u64;
    let mut fails = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state.is_multiple_of(5)
    };
    let (mut requests, mut failed_requests) = (0u32, 0u32);
    for t in 0..6000u32 {
        let budget = if t % 2 == 0 { 2 } else { 0 };
        let mut spans = Vec::new();
        let mut at = 1;
        let mut failed = false;
        for a in 0..=budget {
            failed = fails();
            let id = 2 + 2 * a as u8;
            let mut client = span(t, id, Some(1), "web", "api", Client, at, at + 4, failed);
            client.peer = Some("api".into());
            spans.push(client);
            spans.push(span(
                t,
                id + 1,
                Some(id),
                "api",
                "Get",
                Server,
                at,
                at + 4,
                failed,
            ));
            at += 5;
            if !failed {
                break;
            }
        }
        spans.push(span(t, 1, None, "web", "GET /", Server, 0, at + 1, failed));
        requests += 1;
        failed_requests += u32::from(failed);
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let observed = f64::from(failed_requests) / f64::from(requests);
    let view = view_of(&batch);
    let e = view.edge("web GET /", "api Get").unwrap();
    assert_eq!(e.retries, Some(2));
    assert!(e.stats.retries_mixed());
    let steps = e.stats.retry_steps();
    assert_eq!(steps.len(), 3, "{steps:?}");
    // About half the first failures were retried (the even traces'), every second one was.
    let share = steps[0].0 as f64 / steps[0].1 as f64;
    assert!((share - 0.5).abs() < 0.1, "{steps:?}");
    assert_eq!(steps[1].0, steps[1].1, "{steps:?}");
    assert_eq!(steps[2].0, 0, "{steps:?}");

    // One budget of two retries for every call would predict 0.2³ = 0.008 and, under
    // error=0.5 (an attempt fails 0.6), 0.6³ = 0.22: the merged site is half of each.
    let p = &run(&view, &[])[0];
    assert!(
        (p.baseline.error_rate - observed).abs() < 0.03,
        "observed {observed}: {p:?}"
    );
    let truth = 0.5 * 0.6 + 0.5 * 0.6f64.powi(3);
    let p = &run(&view, &["api:error=0.5"])[0];
    let r = &p.predicted.error_rate;
    assert!((r.mean - truth).abs() < 0.04, "truth {truth}: {p:?}");
    assert!(r.lo <= truth && truth <= r.hi, "truth {truth}: {p:?}");
}

#[test]
fn a_server_that_answers_before_its_span_ends_costs_its_caller_what_it_waited() {
    use SpanKind::*;
    // `api Get` answers after about 25 ms and works on until 120 ms (its span's end): the
    // request waits for the answer only.
    let mut batch = SpanBatch::new();
    for t in 0..1000u32 {
        let answer = 24 + i64::from(t % 5);
        let mut client = span(t, 2, Some(1), "web", "api", Client, 1, 1 + answer, false);
        client.peer = Some("api".into());
        let spans = [
            span(t, 1, None, "web", "GET /", Server, 0, answer + 3, false),
            client,
            span(t, 3, Some(2), "api", "Get", Server, 1, 121, false),
        ];
        for s in &spans {
            batch.push_owned(s);
        }
    }
    let view = view_of(&batch);
    let e = view.edge("web GET /", "api Get").unwrap();
    assert_eq!(e.stats.server_longer_ns.count(), 1000);
    let p = &run(&view, &[])[0];
    assert!(
        (p.baseline.p50_ms - 29.0).abs() < 3.0,
        "observed about 29 ms: {p:?}"
    );
    // A delay added to the call still reaches the caller in full (in the draws where no
    // timeout, never seen, cuts it first).
    let p = &run(&view, &["api:latency=+100ms"])[0];
    let m = p.predicted.p50_ms.hi;
    assert!((m - 129.0).abs() < 4.0, "{p:?}");
}
