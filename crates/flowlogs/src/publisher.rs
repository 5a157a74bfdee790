//! One S3 flow log's files over time (spec 8.2): records are buffered as
//! lines and cut into a file when the oldest has waited `publish_every`
//! (5 minutes) or the file would pass `max_bytes` (75 MB); each file goes
//! to the partition of its own timestamp, the publish time.
//!
//! Sans-IO: the caller passes the time, takes the finished [`S3Object`]s
//! and puts them; this module reads no clock and writes nothing. Memory is
//! bounded by `max_records`: past it records are dropped and counted, never
//! a panic.

use openvpc_model::flow_log::{EniContext, FlowRecord};

use crate::encode::{self, EncodeError};
use crate::line::LineFormat;
use crate::s3::{FileFormat, S3Layout, file_hash};

/// spec 8.2: files are published every 5 minutes.
pub const DEFAULT_PUBLISH_EVERY_SECS: u64 = 300;
/// spec 8.2: at most 75 MB a file.
pub const DEFAULT_MAX_BYTES: usize = 75 * 1000 * 1000;
/// A bound on one flow log's buffered records (about 150 MB of lines).
pub const DEFAULT_MAX_RECORDS: usize = 1_000_000;

/// One flow log's publishing settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    pub layout: S3Layout,
    pub format: LineFormat,
    /// The region the `region` field shows.
    pub region: String,
    /// A file is due once its oldest record has been buffered this long.
    pub publish_every_secs: u64,
    /// A file is cut before its lines (uncompressed, with newlines) pass
    /// this size, so the compressed file stays under it too.
    pub max_bytes: usize,
    /// At most this many records are buffered; more are dropped.
    pub max_records: usize,
}

impl PublisherConfig {
    /// The spec's thresholds; `region` is the layout's region.
    pub fn new(layout: S3Layout, format: LineFormat) -> PublisherConfig {
        PublisherConfig {
            region: layout.region.clone(),
            layout,
            format,
            publish_every_secs: DEFAULT_PUBLISH_EVERY_SECS,
            max_bytes: DEFAULT_MAX_BYTES,
            max_records: DEFAULT_MAX_RECORDS,
        }
    }
}

/// A finished file to put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Object {
    pub bucket: String,
    pub key: String,
    pub body: Vec<u8>,
}

/// Lines bound for one file.
#[derive(Debug, Default)]
struct Chunk {
    lines: Vec<String>,
    bytes: usize,
}

/// One S3 flow log's buffer of records not yet published.
#[derive(Debug)]
pub struct Publisher {
    config: PublisherConfig,
    /// Files already full: due at the next [`Publisher::due`].
    sealed: Vec<Chunk>,
    open: Chunk,
    /// When the open chunk's first record was pushed.
    opened_at: Option<u64>,
    buffered: usize,
    /// Files made so far: part of each file's hash.
    seq: u64,
    /// Records dropped: over `max_records`, or in a file that failed to encode.
    pub dropped: u64,
    /// Files that failed to encode (their records count in `dropped`).
    pub encode_errors: u64,
    /// Why the last file failed to encode.
    pub last_error: Option<String>,
}

impl Publisher {
    pub fn new(config: PublisherConfig) -> Publisher {
        Publisher {
            config,
            sealed: Vec::new(),
            open: Chunk::default(),
            opened_at: None,
            buffered: 0,
            seq: 0,
            dropped: 0,
            encode_errors: 0,
            last_error: None,
        }
    }

    pub fn config(&self) -> &PublisherConfig {
        &self.config
    }

    /// Records buffered and not yet returned in a file.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Buffers a record received at `now_secs`.
    pub fn push(&mut self, ctx: &EniContext, rec: &FlowRecord, now_secs: u64) {
        if self.buffered >= self.config.max_records {
            self.dropped += 1;
            return;
        }
        let line = self.config.format.render(ctx, &self.config.region, rec);
        let size = line.len() + 1;
        // spec 8.2: a file that would pass the size limit is closed and a
        // new one started.
        if !self.open.lines.is_empty() && self.open.bytes + size > self.config.max_bytes {
            self.seal();
        }
        if self.open.lines.is_empty() {
            self.opened_at = Some(now_secs);
        }
        self.open.bytes += size;
        self.open.lines.push(line);
        self.buffered += 1;
        if self.open.bytes >= self.config.max_bytes {
            self.seal();
        }
    }

    /// The files finished by `now_secs`: every full one, and the open one
    /// once its oldest record is `publish_every_secs` old.
    pub fn due(&mut self, now_secs: u64) -> Vec<S3Object> {
        let aged = self
            .opened_at
            .is_some_and(|t| now_secs.saturating_sub(t) >= self.config.publish_every_secs);
        if aged {
            self.seal();
        }
        self.publish(now_secs)
    }

    /// Everything buffered, as files stamped `now_secs` (on shutdown, or when
    /// the flow log is deleted).
    pub fn flush(&mut self, now_secs: u64) -> Vec<S3Object> {
        self.seal();
        self.publish(now_secs)
    }

    fn seal(&mut self) {
        if !self.open.lines.is_empty() {
            self.sealed.push(std::mem::take(&mut self.open));
        }
        self.opened_at = None;
    }

    fn publish(&mut self, now_secs: u64) -> Vec<S3Object> {
        let stamp = i64::try_from(now_secs).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for chunk in std::mem::take(&mut self.sealed) {
            self.buffered = self.buffered.saturating_sub(chunk.lines.len());
            match self.encode(&chunk.lines) {
                Ok(body) => {
                    let hash = file_hash(&self.config.layout.flow_log_id, self.seq, &body);
                    self.seq += 1;
                    out.push(S3Object {
                        bucket: self.config.layout.bucket.clone(),
                        key: self.config.layout.object_key(stamp, &hash),
                        body,
                    });
                }
                Err(e) => {
                    self.encode_errors += 1;
                    self.dropped += chunk.lines.len() as u64;
                    self.last_error = Some(e.to_string());
                }
            }
        }
        out
    }

    fn encode(&self, lines: &[String]) -> Result<Vec<u8>, EncodeError> {
        match self.config.layout.file_format {
            FileFormat::PlainText => encode::text_gz(&self.config.format, lines),
            FileFormat::Parquet => encode::parquet(&self.config.format, lines),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::line::tests::{ctx, ok_record};

    fn config() -> PublisherConfig {
        PublisherConfig::new(
            S3Layout {
                bucket: "logs".into(),
                prefix: String::new(),
                account_id: "123456789012".into(),
                region: "us-east-1".into(),
                flow_log_id: "fl-1234abcd".into(),
                file_format: FileFormat::PlainText,
                hive_compatible_partitions: false,
                per_hour_partition: true,
            },
            LineFormat::default(),
        )
    }

    fn lines(obj: &S3Object) -> Vec<String> {
        let mut s = String::new();
        GzDecoder::new(&obj.body[..])
            .read_to_string(&mut s)
            .unwrap();
        s.lines().map(str::to_owned).collect()
    }

    // 2018-06-20T16:20:00Z
    const T: u64 = 1_529_511_600;

    #[test]
    fn publishes_after_five_minutes() {
        // spec 8.2: files are published every 5 minutes.
        let mut p = Publisher::new(config());
        assert!(p.due(T).is_empty());
        p.push(&ctx(), &ok_record(), T);
        p.push(&ctx(), &ok_record(), T + 100);
        assert!(p.due(T + 299).is_empty());
        let files = p.due(T + 300);
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].bucket, "logs");
        // The file's timestamp and hour partition are the publish time's.
        assert!(
            files[0].key.starts_with(
                "AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/16/123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1625Z_"
            ),
            "{}",
            files[0].key
        );
        assert_eq!(lines(&files[0]).len(), 3, "header and two records");
        assert_eq!(p.buffered(), 0);
        assert!(p.due(T + 1000).is_empty());
    }

    #[test]
    fn publish_time_picks_the_hour_partition() {
        // Records pushed in hour 16 but published in hour 17 go to 17/.
        let mut p = Publisher::new(config());
        p.push(&ctx(), &ok_record(), T + 3500);
        let files = p.due(T + 3800);
        assert_eq!(files.len(), 1);
        assert!(files[0].key.contains("/2018/06/20/17/"), "{}", files[0].key);
    }

    #[test]
    fn cuts_a_file_at_max_bytes() {
        // spec 8.2: at most 75 MB a file; a full file is published at once.
        let mut cfg = config();
        let line_len = cfg.format.render(&ctx(), "us-east-1", &ok_record()).len() + 1;
        cfg.max_bytes = line_len * 3;
        let mut p = Publisher::new(cfg);
        for _ in 0..7 {
            p.push(&ctx(), &ok_record(), T);
        }
        let files = p.due(T + 1);
        assert_eq!(files.len(), 2, "two full files of three records");
        assert!(files.iter().all(|f| lines(f).len() == 4));
        assert_ne!(files[0].key, files[1].key, "same minute, distinct hashes");
        assert_eq!(p.buffered(), 1);
        let rest = p.flush(T + 2);
        assert_eq!(rest.len(), 1);
        assert_eq!(lines(&rest[0]).len(), 2);
        assert_eq!(p.buffered(), 0);
    }

    #[test]
    fn drops_and_counts_past_max_records() {
        let mut cfg = config();
        cfg.max_records = 2;
        let mut p = Publisher::new(cfg);
        for _ in 0..5 {
            p.push(&ctx(), &ok_record(), T);
        }
        assert_eq!(p.buffered(), 2);
        assert_eq!(p.dropped, 3);
        assert_eq!(p.flush(T).len(), 1);
        // Room again once published.
        p.push(&ctx(), &ok_record(), T);
        assert_eq!(p.buffered(), 1);
        assert_eq!(p.dropped, 3);
    }

    #[test]
    fn parquet_files() {
        let mut cfg = config();
        cfg.layout.file_format = FileFormat::Parquet;
        let mut p = Publisher::new(cfg);
        p.push(&ctx(), &ok_record(), T);
        let files = p.flush(T);
        assert_eq!(files.len(), 1);
        assert!(files[0].key.ends_with(".log.parquet"));
        assert_eq!(&files[0].body[..4], b"PAR1");
        assert_eq!(p.encode_errors, 0);
    }
}
