"""Exports traces to augur with the OpenTelemetry Python SDK's own OTLP exporters.

usage: otel_export.py grpc|http ENDPOINT REQUESTS

Each request is a trace: py-frontend-<protocol> `GET /checkout` (SERVER) calls
py-payment-<protocol> `Charge` through a CLIENT span; the payment service records its SERVER
span under the propagated context, as two instrumented services would.
"""
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind


def exporter(protocol, endpoint):
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter(endpoint=endpoint, insecure=True)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint)


def provider(service, protocol, endpoint):
    p = TracerProvider(resource=Resource.create({"service.name": service}))
    p.add_span_processor(BatchSpanProcessor(exporter(protocol, endpoint)))
    return p


def main():
    protocol, endpoint, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    front = provider(f"py-frontend-{protocol}", protocol, endpoint)
    pay = provider(f"py-payment-{protocol}", protocol, endpoint)
    ft = front.get_tracer("augur-test")
    pt = pay.get_tracer("augur-test")
    for _ in range(n):
        with ft.start_as_current_span("GET /checkout", kind=SpanKind.SERVER):
            with ft.start_as_current_span(
                "POST /charge", kind=SpanKind.CLIENT, attributes={"peer.service": f"py-payment-{protocol}"}
            ):
                ctx = trace.get_current_span().get_span_context()
                parent = trace.set_span_in_context(trace.NonRecordingSpan(ctx))
                with pt.start_as_current_span("Charge", context=parent, kind=SpanKind.SERVER):
                    pass
    ok = front.force_flush(30_000) and pay.force_flush(30_000)
    front.shutdown()
    pay.shutdown()
    if not ok:
        print("flush failed", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
