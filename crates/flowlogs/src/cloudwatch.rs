//! Flow log records as CloudWatch Logs events (spec 8.2): one log stream per
//! ENI, named by its ID, each event one record's line stamped with the
//! record's window start.
//!
//! Sans-IO: it only shapes events; the caller puts them (PutLogEvents wants
//! each stream's events in time order, which is how they come out).

use std::collections::BTreeMap;

use openvpc_model::flow_log::{EniContext, FlowRecord};

use crate::line::LineFormat;

/// One log event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogEvent {
    /// Milliseconds since the epoch: the record's `start`.
    pub timestamp_ms: i64,
    pub message: String,
}

/// The records' events by log stream (the ENI ID), each stream in time order.
pub fn cloudwatch_events<'a>(
    format: &LineFormat,
    region: &str,
    records: impl IntoIterator<Item = (&'a EniContext, &'a FlowRecord)>,
) -> BTreeMap<String, Vec<LogEvent>> {
    let mut streams: BTreeMap<String, Vec<LogEvent>> = BTreeMap::new();
    for (ctx, rec) in records {
        streams
            .entry(rec.eni_id.clone())
            .or_default()
            .push(LogEvent {
                timestamp_ms: rec.start.saturating_mul(1000),
                message: format.render(ctx, region, rec),
            });
    }
    for events in streams.values_mut() {
        // Stable: records of the same second keep their order.
        events.sort_by_key(|e| e.timestamp_ms);
    }
    streams
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line::tests::{ctx, nodata_record, ok_record};

    #[test]
    fn one_stream_per_eni_in_time_order() {
        // spec 8.2: a log group with one log stream per ENI.
        let c1 = ctx();
        let mut c2 = ctx();
        c2.eni_id = "eni-0000000000000000b".into();
        let late = ok_record();
        let mut early = nodata_record();
        early.start -= 60;
        let mut other = ok_record();
        other.eni_id = c2.eni_id.clone();
        let recs = [(&c1, &late), (&c2, &other), (&c1, &early)];
        let streams = cloudwatch_events(&LineFormat::default(), "us-east-1", recs);
        assert_eq!(streams.len(), 2);
        let s1 = &streams["eni-1235b8ca123456789"];
        assert_eq!(s1.len(), 2);
        assert_eq!(s1[0].timestamp_ms, (1418530010 - 60) * 1000);
        assert!(s1[0].message.ends_with("NODATA"));
        assert!(s1[1].message.ends_with("ACCEPT OK"));
        assert_eq!(streams["eni-0000000000000000b"].len(), 1);
    }
}
