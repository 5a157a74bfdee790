//! Maglev's properties (issue 16 item 3, spec section 14): near-equal
//! shares, deterministic tables, and a change in the node set moves
//! (almost) only the flows of the node that changed.

use openvpc_hyperplane::maglev::{DEFAULT_TABLE_SIZE, Maglev, churn, disruption};
use proptest::prelude::*;

fn nodes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("hp-{i}")).collect()
}

/// Spec 14: each node gets M/n slots within about 1 % for M ≫ n.
#[test]
fn balance_within_a_few_percent() {
    for n in 1..=32 {
        let m = Maglev::new(&nodes(n), DEFAULT_TABLE_SIZE).unwrap();
        assert!(m.imbalance() < 0.02, "n={n}: {}", m.imbalance());
        assert_eq!(
            m.slots_per_node().iter().sum::<usize>(),
            DEFAULT_TABLE_SIZE as usize
        );
    }
}

/// Removing one of n nodes moves its own flows plus under 2 % of the
/// others'; adding one moves about 1/(n+1), nearly all to the new node.
#[test]
fn disruption_bounds() {
    for n in 4..=16 {
        let c = churn(n, DEFAULT_TABLE_SIZE).unwrap();
        let others = c.removed_others_worst.unwrap();
        assert!(others < 0.02, "n={n}: {others}");
        let moved = c.removed_moved.unwrap();
        assert!((moved - 1.0 / n as f64).abs() < 0.02, "n={n}: {moved}");
        let ideal = 1.0 / (n + 1) as f64;
        assert!((c.added_moved - ideal).abs() < 0.02, "n={n}: {c:?}");
        assert!(c.added_others < 0.02, "n={n}: {c:?}");
    }
}

#[test]
fn removed_nodes_flows_all_move_elsewhere() {
    let all = Maglev::new(&nodes(6), DEFAULT_TABLE_SIZE).unwrap();
    let rest = Maglev::new(&nodes(6)[1..], DEFAULT_TABLE_SIZE).unwrap();
    let d = disruption(&all, &rest).unwrap();
    for h in 0..DEFAULT_TABLE_SIZE as u64 {
        assert_ne!(rest.node(h), "hp-0");
    }
    assert!(d.moved >= 1.0 / 6.0 - 0.02);
}

proptest! {
    /// Every host builds the same table from the same set of nodes.
    #[test]
    fn deterministic(n in 1usize..20, rot in 0usize..20, h in any::<u64>()) {
        let a = nodes(n);
        let mut b = a.clone();
        b.rotate_left(rot % n);
        let ta = Maglev::new(&a, 251).unwrap();
        let tb = Maglev::new(&b, 251).unwrap();
        prop_assert_eq!(ta.node(h), tb.node(h));
        let again = Maglev::new(&a, 251).unwrap();
        prop_assert_eq!(ta.node(h), again.node(h));
    }

    /// Lookups land on a node of the list for any hash.
    #[test]
    fn lookup_in_range(n in 1usize..50, h in any::<u64>()) {
        let t = Maglev::new(&nodes(n), 1_009).unwrap();
        prop_assert!(t.lookup(h) < n);
    }
}
