//! CSV span tables, with the TrainTicket (Nezha) columns:
//! `TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration`.
//!
//! Columns are found by name (case-insensitive), so their order does not matter; `ServiceName` may
//! stand for `PodName`, and `Duration` (microseconds) stands in for a missing end time. Ids that are
//! hex of the right length are decoded; others are hashed into ids (stable, so parents still match).
//! A Kubernetes pod name loses its two trailing hash segments (`ts-basic-service-5dc8d4f9fd-llznp`
//! is `ts-basic-service`). These files carry no kind or attributes, and a file without a `status`
//! column records no status: its spans' status is [`StatusCode::Unknown`], so the model does not
//! mistake "not recorded" for "never failed".

use std::io::BufRead;

use crate::read::{Ctx, Format};
use crate::span::{fnv1a64, parse_hex_id, Span, SpanKind, StatusCode};
use crate::IngestError;

struct Columns {
    trace: usize,
    span: usize,
    parent: usize,
    service: usize,
    pod: bool,
    name: usize,
    start: usize,
    end: Option<usize>,
    duration: Option<usize>,
    kind: Option<usize>,
    status: Option<usize>,
}

pub(crate) fn read(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut line = String::new();
    let mut fields: Vec<String> = Vec::new();
    reader
        .read_line(&mut line)
        .map_err(|e| IngestError::io(ctx.path, e))?;
    split_csv(
        line.trim_start_matches('\u{feff}')
            .trim_end_matches(['\r', '\n']),
        &mut fields,
    );
    let cols = columns(&fields).map_err(|m| ctx.unreadable(Format::Csv, m))?;
    let mut line_no = 1u64;
    loop {
        line.clear();
        let n = match reader.read_line(&mut line) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                line_no += 1;
                ctx.bad(format!("line {line_no}"), "not UTF-8 text")?;
                skip_line(reader).map_err(|e| IngestError::io(ctx.path, e))?;
                continue;
            }
            Err(e) => return Err(IngestError::io(ctx.path, e)),
        };
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.trim_end_matches(['\r', '\n']);
        if text.is_empty() {
            continue;
        }
        split_csv(text, &mut fields);
        match row(&fields, &cols, ctx) {
            Ok(span) => ctx.push(span),
            Err(reason) => ctx.bad(format!("line {line_no}"), reason)?,
        }
        ctx.maybe_flush()?;
    }
    Ok(())
}

fn skip_line(reader: &mut dyn BufRead) -> std::io::Result<()> {
    let mut junk = Vec::new();
    reader.read_until(b'\n', &mut junk)?;
    Ok(())
}

fn columns(header: &[String]) -> Result<Columns, String> {
    let find = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.iter().any(|n| h.trim().eq_ignore_ascii_case(n)))
    };
    let need = |names: &[&str]| {
        find(names).ok_or_else(|| format!("the header has no {} column", names[0]))
    };
    let (service, pod) = match find(&["PodName", "pod"]) {
        Some(i) => (i, true),
        None => (need(&["ServiceName", "service", "service_name"])?, false),
    };
    let end = find(&["EndTimeUnixNano", "end_ns", "end_time_unix_nano"]);
    let duration = find(&["Duration", "duration_us"]);
    if end.is_none() && duration.is_none() {
        return Err("the header has neither an EndTimeUnixNano nor a Duration column".into());
    }
    Ok(Columns {
        trace: need(&["TraceID", "trace_id"])?,
        span: need(&["SpanID", "span_id"])?,
        parent: need(&["ParentID", "ParentSpanID", "parent_span_id"])?,
        service,
        pod,
        name: need(&["OperationName", "name", "operation"])?,
        start: need(&["StartTimeUnixNano", "start_ns", "start_time_unix_nano"])?,
        end,
        duration,
        kind: find(&["kind", "SpanKind"]),
        status: find(&["status", "StatusCode"]),
    })
}

fn row(f: &[String], c: &Columns, ctx: &mut Ctx<'_>) -> Result<Span, String> {
    let get = |i: usize, what: &str| {
        f.get(i)
            .map(|s| s.trim())
            .ok_or_else(|| format!("no {what} field"))
    };
    let trace_text = get(c.trace, "TraceID")?;
    if trace_text.is_empty() {
        return Err("empty TraceID".into());
    }
    let span_text = get(c.span, "SpanID")?;
    if span_text.is_empty() {
        return Err("empty SpanID".into());
    }
    let parent_text = get(c.parent, "ParentID")?;
    let start: i64 = get(c.start, "StartTimeUnixNano")?
        .parse()
        .map_err(|_| "StartTimeUnixNano is not an integer")?;
    if start < 0 {
        return Err("StartTimeUnixNano is negative (nanoseconds since 1970 expected)".into());
    }
    let end_ns = match c.end.map(|i| get(i, "EndTimeUnixNano")).transpose()? {
        Some(e) if !e.is_empty() => e
            .parse::<i64>()
            .map_err(|_| "EndTimeUnixNano is not an integer")?,
        _ => {
            let d: i64 = c
                .duration
                .map(|i| get(i, "Duration"))
                .transpose()?
                .unwrap_or("")
                .parse()
                .map_err(|_| "Duration is not an integer")?;
            start.saturating_add(d.saturating_mul(1000))
        }
    };
    let parent_span_id = match parent_text {
        "" | "root" | "-1" | "0" | "None" | "null" => None,
        p => Some(span_id(p)),
    };
    let service = get(c.service, "service")?;
    let service = if c.pod {
        service_of_pod(service)
    } else {
        service
    };
    let kind = match c.kind.and_then(|i| f.get(i)) {
        Some(k) => SpanKind::from_name(k.trim()).unwrap_or(SpanKind::Unspecified),
        None => SpanKind::Unspecified,
    };
    let status = match c.status.and_then(|i| f.get(i)) {
        Some(s) => StatusCode::from_name(s.trim()).unwrap_or(StatusCode::Unset),
        None if c.status.is_some() => StatusCode::Unset,
        None => StatusCode::Unknown,
    };
    let name = get(c.name, "OperationName")?;
    let strings = &mut ctx.batch.strings;
    Ok(Span {
        trace_id: trace_id(trace_text),
        span_id: span_id(span_text),
        parent_span_id,
        service: strings.intern(if service.is_empty() {
            "unknown_service"
        } else {
            service
        }),
        name: strings.intern(name),
        kind,
        start_ns: start,
        end_ns,
        status,
        peer: None,
        peer_kind: Default::default(),
        http_route: None,
        rpc_method: None,
        error_type: None,
        experiment: None,
    })
}

fn trace_id(text: &str) -> [u8; 16] {
    if let Some(id) = parse_hex_id::<16>(text, true) {
        return id;
    }
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&fnv1a64(text.as_bytes()).to_be_bytes());
    let mut salted = text.as_bytes().to_vec();
    salted.push(0xff);
    id[8..].copy_from_slice(&fnv1a64(&salted).to_be_bytes());
    id
}

fn span_id(text: &str) -> [u8; 8] {
    parse_hex_id::<8>(text, true).unwrap_or_else(|| fnv1a64(text.as_bytes()).to_be_bytes())
}

/// The service of a Kubernetes pod name: without the ReplicaSet hash and the pod suffix.
pub fn service_of_pod(pod: &str) -> &str {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    if parts.len() == 3 {
        let (suffix, hash) = (parts[0], parts[1]);
        let alnum = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        };
        if suffix.len() == 5 && alnum(suffix) && (6..=10).contains(&hash.len()) && alnum(hash) {
            return parts[2];
        }
    }
    pod
}

/// Splits one CSV line (RFC 4180 quoting within the line).
fn split_csv(line: &str, out: &mut Vec<String>) {
    out.clear();
    let mut cur = String::new();
    let mut in_quotes = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', true) if chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            ('"', _) => in_quotes = !in_quotes,
            (',', false) => out.push(std::mem::take(&mut cur)),
            (c, _) => cur.push(c),
        }
    }
    out.push(cur);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_names_lose_their_hashes() {
        assert_eq!(
            service_of_pod("ts-basic-service-5dc8d4f9fd-llznp"),
            "ts-basic-service"
        );
        assert_eq!(
            service_of_pod("ts-gateway-service-6f6cfc45b-h5m2n"),
            "ts-gateway-service"
        );
        assert_eq!(service_of_pod("frontend"), "frontend");
        assert_eq!(service_of_pod("redis-0"), "redis-0");
    }

    /// Reads `text` as a CSV file, and the same spans back from a Parquet file written from them.
    fn statuses(text: &str) -> (Vec<StatusCode>, Vec<StatusCode>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spans.csv");
        std::fs::write(&path, text).unwrap();
        let mut batch = crate::SpanBatch::new();
        let mut report = crate::IngestReport::default();
        crate::read_file(&path, &Default::default(), &mut report, &mut |b| {
            batch = b; // one batch: the file is far smaller than a batch
            Ok(())
        })
        .unwrap();
        let parquet = dir.path().join("spans.parquet");
        crate::write_parquet(&parquet, &batch).unwrap();
        let mut back = Vec::new();
        crate::read_file(&parquet, &Default::default(), &mut report, &mut |b| {
            back.extend(b.spans.iter().map(|s| s.status));
            Ok(())
        })
        .unwrap();
        (batch.spans.iter().map(|s| s.status).collect(), back)
    }

    #[test]
    fn a_file_without_a_status_column_records_no_status() {
        let header =
            "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano";
        let (read, back) = statuses(&format!(
            "{header}\nabc,s1,root,ts-order-service-7d9f8b6c5d-x2k4q,GET /order,1000,5000\n"
        ));
        assert_eq!(read, vec![StatusCode::Unknown]);
        assert_eq!(back, read, "the span table keeps it");
        let (read, back) = statuses(&format!(
            "{header},Status\nabc,s1,root,a,GET /order,1000,5000,ERROR\nabc,s2,s1,b,GET /x,2000,3000,\n"
        ));
        assert_eq!(read, vec![StatusCode::Error, StatusCode::Unset]);
        assert_eq!(back, read);
    }

    #[test]
    fn quoted_fields() {
        let mut v = Vec::new();
        split_csv(r#"a,"b,c","d""e",,f"#, &mut v);
        assert_eq!(v, vec!["a", "b,c", "d\"e", "", "f"]);
    }
}
