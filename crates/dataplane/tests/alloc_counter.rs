//! The counting allocator behind `openvpc bench dataplane`'s allocations per
//! packet, installed here as this test binary's global allocator: it sees
//! that it is installed, and it sees the fast path allocate nothing
//! (DESIGN.md: no allocation on the fast path).

use openvpc_dataplane::bench::alloc_counter::{self, CountingAllocator};
use openvpc_dataplane::router::BATCH;
use openvpc_dataplane::workload::Workload;
use openvpc_dataplane::{Output, PacketBuf};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

#[test]
fn counts_when_installed_and_the_fast_path_allocates_nothing() {
    assert!(alloc_counter::installed());
    let flows = 1_024;
    let mut w = Workload::new(flows);
    assert_eq!(w.establish(1_000), flows);
    let mut bufs = vec![PacketBuf::default(); BATCH];
    let mut outs = [Output::Pending; BATCH];
    // The first pass in the interval may grow the flow-log record buffer
    // (see `openvpc_dataplane::bench`); the steady state must not allocate.
    for i in (0..flows).step_by(BATCH) {
        w.send_batch(i, &mut bufs, &mut outs, 2_000);
    }
    let before = alloc_counter::allocations();
    for i in (0..flows).step_by(BATCH) {
        w.send_batch(i, &mut bufs, &mut outs, 2_000);
    }
    assert_eq!(alloc_counter::allocations() - before, 0);
}
