//! The future of a call is kept for every call in flight (inside the MCP
//! library's task for the request), so its size is memory per call. With
//! jemalloc's size classes a few bytes more can cost a whole class (about
//! 1 KB per call in flight at 10,000, seen in bench/ workload g), so this
//! guards the size. If it fails after a change, box what the change added
//! to a rare path (as `Pool::call` boxes its cancel path) or raise the bound
//! after checking `bash bench/run --peers flw --workloads memory`.

/// The bound, in bytes (1,080 when written, down from 1,320 before the
/// cancel path was boxed).
const MAX_CALL_FUTURE: usize = 1_152;

#[test]
fn a_call_in_flight_keeps_its_future_small() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _in_runtime = rt.enter();
    let dir = std::env::temp_dir().join(format!("flw-future-size-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("agent.py"), "").unwrap();
    let cfg = flw::config::PoolConfig::for_script(&dir.join("agent.py")).unwrap();
    // The runtime is never driven: no worker starts.
    let router = flw::router::Router::for_pools(vec![cfg]);
    let call = router.call("echo", Default::default(), Default::default());
    let size = std::mem::size_of_val(&call);
    eprintln!("Router::call future: {size} bytes");
    assert!(
        size <= MAX_CALL_FUTURE,
        "Router::call's future is {size} bytes, over {MAX_CALL_FUTURE}: see this file's docs"
    );
    drop(call);
    std::fs::remove_dir_all(&dir).unwrap();
}
