//! Fuzzes what the JSON API parses from a request: the body of a tool call
//! or a flow run (a JSON object of arguments or of the initial store), the
//! query strings of those requests and of the run list, and the durations
//! they carry.
#![no_main]

use axum::extract::Query;
use axum::http::Uri;
use flw::serve::api::{body_object, CallQuery, FlowQuery, ListQuery};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: &[u8]| {
    // `POST /v1/tools/{name}/call` and `POST /v1/flows/{name}/runs`.
    let _ = body_object(input, "the tool's arguments");
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    // `?timeout=30s`, `?deadline=5m`.
    let _ = flw::config::parse_duration(text);
    // The query strings, as the extractor reads them from the request URI.
    if let Ok(uri) = format!("/v1/x?{text}").parse::<Uri>() {
        let _ = Query::<CallQuery>::try_from_uri(&uri);
        let _ = Query::<FlowQuery>::try_from_uri(&uri);
        let _ = Query::<ListQuery>::try_from_uri(&uri);
    }
});
