//! Where a flow log's S3 files go (spec 8.2): the object key's folders
//! (plain or Hive-compatible, per day or per hour) and the file name
//! `<acct>_vpcflowlogs_<region>_<fl-id>_YYYYMMDDTHHmmZ_<hash>.log.gz`.
//!
//! This module owns the key layout only; it must not know what a file holds
//! (`encode`) or when one is cut (`publisher`). Dates come from
//! `openvpc_model::time`, the project's one civil-date conversion.

use openvpc_model::time::civil_time;
use sha2::{Digest, Sha256};

/// `DestinationOptions.FileFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FileFormat {
    /// `plain-text`: gzip-compressed lines under a header line.
    #[default]
    PlainText,
    /// `parquet`: Parquet with gzip-compressed columns.
    Parquet,
}

impl FileFormat {
    /// The API spelling, `plain-text` or `parquet`.
    pub fn parse(s: &str) -> Option<FileFormat> {
        match s {
            "plain-text" => Some(FileFormat::PlainText),
            "parquet" => Some(FileFormat::Parquet),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FileFormat::PlainText => "plain-text",
            FileFormat::Parquet => "parquet",
        }
    }

    /// The file name's suffix. AWS names Parquet flow log files
    /// `...<hash>.log.parquet` [U: seen in published keys, not documented].
    pub fn suffix(self) -> &'static str {
        match self {
            FileFormat::PlainText => ".log.gz",
            FileFormat::Parquet => ".log.parquet",
        }
    }
}

/// Everything an S3 flow log's object keys depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Layout {
    pub bucket: String,
    /// The ARN's key prefix without slashes at its ends; empty when none
    /// (as `openvpc_records::flow_log::parse_s3_arn` returns it).
    pub prefix: String,
    /// The flow log owner's account.
    pub account_id: String,
    pub region: String,
    pub flow_log_id: String,
    pub file_format: FileFormat,
    pub hive_compatible_partitions: bool,
    pub per_hour_partition: bool,
}

impl S3Layout {
    /// The folder a file stamped `unix_secs` goes to, ending with `/`:
    /// `prefix/AWSLogs/<acct>/vpcflowlogs/<region>/YYYY/MM/DD/[HH/]`, or
    /// with Hive-compatible prefixes
    /// `prefix/AWSLogs/aws-account-id=<acct>/aws-service=vpcflowlogs/aws-region=<region>/year=YYYY/month=MM/day=DD/[hour=HH/]`.
    pub fn folder(&self, unix_secs: i64) -> String {
        let (y, mo, d, h, _, _) = civil_time(unix_secs);
        let mut key = String::new();
        if !self.prefix.is_empty() {
            key.push_str(&self.prefix);
            key.push('/');
        }
        let (acct, region) = (&self.account_id, &self.region);
        if self.hive_compatible_partitions {
            key.push_str(&format!(
                "AWSLogs/aws-account-id={acct}/aws-service=vpcflowlogs/aws-region={region}/year={y:04}/month={mo:02}/day={d:02}/"
            ));
            if self.per_hour_partition {
                key.push_str(&format!("hour={h:02}/"));
            }
        } else {
            key.push_str(&format!(
                "AWSLogs/{acct}/vpcflowlogs/{region}/{y:04}/{mo:02}/{d:02}/"
            ));
            if self.per_hour_partition {
                key.push_str(&format!("{h:02}/"));
            }
        }
        key
    }

    /// The file name for a file stamped `unix_secs` with `hash`:
    /// `<acct>_vpcflowlogs_<region>_<fl-id>_YYYYMMDDTHHmmZ_<hash>.log.gz`.
    pub fn file_name(&self, unix_secs: i64, hash: &str) -> String {
        let (y, mo, d, h, mi, _) = civil_time(unix_secs);
        format!(
            "{}_vpcflowlogs_{}_{}_{y:04}{mo:02}{d:02}T{h:02}{mi:02}Z_{hash}{}",
            self.account_id,
            self.region,
            self.flow_log_id,
            self.file_format.suffix()
        )
    }

    /// The whole object key: [`folder`](Self::folder) then [`file_name`](Self::file_name).
    pub fn object_key(&self, unix_secs: i64, hash: &str) -> String {
        self.folder(unix_secs) + &self.file_name(unix_secs, hash)
    }
}

/// The file name's hash: 8 hex digits of SHA-256 over the flow log ID, the
/// publisher's file sequence number and the body, so two files published in
/// the same minute never share a key.
pub fn file_hash(flow_log_id: &str, seq: u64, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(flow_log_id.as_bytes());
    h.update(seq.to_be_bytes());
    h.update(body);
    let digest = h.finalize();
    hex::encode(&digest[..4])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> S3Layout {
        S3Layout {
            bucket: "my-bucket".into(),
            prefix: "my-logs".into(),
            account_id: "123456789012".into(),
            region: "us-east-1".into(),
            flow_log_id: "fl-1234abcd".into(),
            file_format: FileFormat::PlainText,
            hive_compatible_partitions: false,
            per_hour_partition: false,
        }
    }

    // 2018-06-20T16:20:07Z, the docs' example file time.
    const T: i64 = 1_529_511_607;

    #[test]
    fn plain_key() {
        // spec 8.2: prefix/AWSLogs/<acct>/vpcflowlogs/<region>/YYYY/MM/DD/ and the file name.
        assert_eq!(
            layout().object_key(T, "fe123456"),
            "my-logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/\
             123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_fe123456.log.gz"
        );
        let no_prefix = S3Layout {
            prefix: String::new(),
            ..layout()
        };
        assert!(
            no_prefix
                .object_key(T, "fe123456")
                .starts_with("AWSLogs/123456789012/vpcflowlogs/")
        );
    }

    #[test]
    fn per_hour_key() {
        // spec 8.2: per-hour partitions add HH/.
        let l = S3Layout {
            per_hour_partition: true,
            ..layout()
        };
        assert_eq!(
            l.folder(T),
            "my-logs/AWSLogs/123456789012/vpcflowlogs/us-east-1/2018/06/20/16/"
        );
    }

    #[test]
    fn hive_keys() {
        // spec 8.2: Hive-compatible prefixes name each partition.
        let l = S3Layout {
            hive_compatible_partitions: true,
            file_format: FileFormat::Parquet,
            ..layout()
        };
        assert_eq!(
            l.object_key(T, "0a0b0c0d"),
            "my-logs/AWSLogs/aws-account-id=123456789012/aws-service=vpcflowlogs/aws-region=us-east-1/\
             year=2018/month=06/day=20/\
             123456789012_vpcflowlogs_us-east-1_fl-1234abcd_20180620T1620Z_0a0b0c0d.log.parquet"
        );
        let hourly = S3Layout {
            per_hour_partition: true,
            ..l
        };
        assert!(
            hourly
                .folder(T)
                .ends_with("/year=2018/month=06/day=20/hour=16/")
        );
    }

    #[test]
    fn hash_is_short_hex_and_unique_per_file() {
        let a = file_hash("fl-1", 0, b"x");
        assert_eq!(a.len(), 8);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, file_hash("fl-1", 1, b"x"));
        assert_ne!(a, file_hash("fl-1", 0, b"y"));
        assert_eq!(FileFormat::parse("parquet"), Some(FileFormat::Parquet));
        assert_eq!(FileFormat::parse("csv"), None);
    }
}
