//! A smoltcp device that is two packet queues (feature `smoltcp`): what a
//! sans-IO core that runs smoltcp hands in (`rx`) and what smoltcp sends
//! (`tx`), for the caller to carry. The hyperplane's health-check prober
//! and the VPN gateway's BGP endpoint both drive smoltcp this way.

use std::collections::VecDeque;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// IP packets in and out of a smoltcp interface (`Medium::Ip`).
#[derive(Debug)]
pub struct QueueDevice {
    /// Packets for smoltcp to read.
    pub rx: VecDeque<Vec<u8>>,
    /// Packets smoltcp sent.
    pub tx: VecDeque<Vec<u8>>,
    mtu: usize,
    /// The most packets `tx` holds: smoltcp waits when it is full.
    tx_limit: usize,
}

impl QueueDevice {
    /// Empty queues; smoltcp sends packets of at most `mtu` bytes and no
    /// more than `tx_limit` wait at once.
    pub fn new(mtu: usize, tx_limit: usize) -> Self {
        QueueDevice {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            mtu,
            tx_limit,
        }
    }
}

impl Device for QueueDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let packet = self.rx.pop_front()?;
        Some((RxToken(packet), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: Instant) -> Option<Self::TxToken<'_>> {
        (self.tx.len() < self.tx_limit).then_some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ip;
        caps.max_transmission_unit = self.mtu;
        // Checksums in software (the default): the packets leave inside
        // an encapsulation (Geneve, ESP) with no offload behind them.
        caps
    }
}

#[derive(Debug)]
pub struct RxToken(Vec<u8>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

#[derive(Debug)]
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut packet = vec![0; len];
        let r = f(&mut packet);
        self.0.push_back(packet);
        r
    }
}
