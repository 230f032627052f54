//! Micro-benchmarks of the supervisor's per-call work, so that a change
//! that slows a hot path shows up in review: `cargo bench -p flw`.
//!
//! - `codec/*`: the protocol line codec (a call encoded for a worker, a
//!   result decoded from one, the bounded line reader splitting a batch).
//! - `dispatch/*`: what the supervisor does for every call besides the
//!   codec (argument validation against the tool's schema, the MCP result).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use flw::mcp::to_mcp_result;
use flw::pool::Manifest;
use flw::worker::lines::{Line, LineReader};
use flw_protocol::{decode_worker_line, Call, SupervisorMessage, ToolSpec, DEFAULT_MAX_LINE_BYTES};
use serde_json::{json, Map, Value};

fn echo_args() -> Map<String, Value> {
    let Value::Object(m) = json!({"text": "hello"}) else {
        unreachable!()
    };
    m
}

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode_call", |b| {
        let mut line = Vec::with_capacity(128);
        b.iter_batched(
            echo_args,
            |args| {
                line.clear();
                SupervisorMessage::Call(Call {
                    id: 123_456,
                    tool: "echo".into(),
                    args,
                    deadline_ms: None,
                })
                .encode_into(&mut line);
                black_box(&line);
            },
            BatchSize::SmallInput,
        )
    });
    let result = br#"{"type":"result","id":123456,"value":"hello"}"#;
    g.bench_function("decode_result", |b| {
        b.iter(|| decode_worker_line(black_box(result), DEFAULT_MAX_LINE_BYTES))
    });
    let object = br#"{"type":"result","id":123456,"value":{"title":"A page","words":1234,"links":["https://a.example/1","https://a.example/2"],"ok":true}}"#;
    g.bench_function("decode_result_object", |b| {
        b.iter(|| decode_worker_line(black_box(object), DEFAULT_MAX_LINE_BYTES))
    });
    g.finish();

    let mut g = c.benchmark_group("codec");
    let lines = 10_000;
    let mut batch = Vec::new();
    for i in 0..lines {
        batch.extend_from_slice(
            format!(r#"{{"type":"result","id":{i},"value":"hello"}}"#).as_bytes(),
        );
        batch.push(b'\n');
    }
    g.throughput(Throughput::Elements(lines));
    g.bench_function("line_reader_10k_lines", |b| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        b.iter(|| {
            rt.block_on(async {
                let mut reader = LineReader::new(&batch[..], DEFAULT_MAX_LINE_BYTES);
                let mut n = 0u64;
                while let Some(line) = reader.next().await {
                    if let Line::Text(t) = line {
                        n += t.len() as u64;
                    }
                }
                black_box(n)
            })
        })
    });
    g.finish();
}

fn dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("dispatch");
    g.throughput(Throughput::Elements(1));
    let Value::Object(input_schema) = json!({
        "type": "object",
        "properties": {"text": {"type": "string"}},
        "required": ["text"],
        "additionalProperties": false
    }) else {
        unreachable!()
    };
    let spec = ToolSpec {
        name: "echo".into(),
        description: "Return the text unchanged.".into(),
        input_schema,
        output_schema: None,
    };
    let manifest = Manifest::new(vec![spec]).unwrap();
    g.bench_function("validate_args", |b| {
        b.iter_batched(
            echo_args,
            |args| manifest.validate("echo", args),
            BatchSize::SmallInput,
        )
    });
    g.bench_function("mcp_result_text", |b| {
        b.iter(|| to_mcp_result(Ok(Value::String(black_box("hello").to_string()))))
    });
    g.finish();
}

criterion_group!(benches, codec, dispatch);
criterion_main!(benches);
