//! EC2 Query parameters (spec 12.1): a flat form of `Name=value` pairs in the
//! body or query string, where lists and structures are spelled with 1-based
//! indexes and no `.member.` (`Filter.1.Value.2`, `TagSpecification.1.Tag.1.Key`).
//! `Params` holds them and reads them back as typed values, lists and
//! nested structures, answering malformed input with AWS error codes.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::api::error::ApiError;
use crate::api::filter::Filter;

/// The parameters of one request, or of one indexed structure inside it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Params {
    map: BTreeMap<String, String>,
}

/// A tag as the API carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// spec 12.1: at most 50 tags per resource, keys ≤ 128 and values ≤ 256 characters.
pub const MAX_TAGS: usize = 50;

impl Params {
    /// Parses a form-encoded body and a query string; a name in both keeps
    /// the body's value.
    pub fn parse(body: &[u8], query: &str) -> Self {
        let mut map: BTreeMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        map.extend(form_urlencoded::parse(body).into_owned());
        Params { map }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Params {
            map: pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.map.get(name).map(String::as_str)
    }

    /// Every parameter name, for the checks that refuse unknown ones.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }

    pub fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.get(name)
            .ok_or_else(|| ApiError::missing_parameter(name))
    }

    /// A `true`/`false` parameter.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(ApiError::invalid_value(
                name,
                other,
                "Expected true or false.",
            )),
        }
    }

    /// A number (or any `FromStr`) parameter.
    pub fn number<T: FromStr>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|v| {
                v.parse()
                    .map_err(|_| ApiError::invalid_value(name, v, "Expected a number."))
            })
            .transpose()
    }

    /// `DryRun=true`.
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        Ok(self.bool("DryRun")?.unwrap_or(false))
    }

    /// The indexes and sub-parameters of `Prefix.N.…`, in index order.
    pub fn structs(&self, prefix: &str) -> Result<Vec<Params>, ApiError> {
        let mut groups: BTreeMap<u32, Params> = BTreeMap::new();
        let dotted = format!("{prefix}.");
        for (name, value) in self.map.range(dotted.clone()..) {
            let Some(rest) = name.strip_prefix(&dotted) else {
                break;
            };
            let (index, field) = rest.split_once('.').unwrap_or((rest, ""));
            let index = parse_index(prefix, index)?;
            groups
                .entry(index)
                .or_default()
                .map
                .insert(field.to_owned(), value.clone());
        }
        Ok(groups.into_values().collect())
    }

    /// The values of `Prefix.1`, `Prefix.2`, … in index order.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, ApiError> {
        Ok(self
            .structs(prefix)?
            .into_iter()
            .filter_map(|p| p.map.get("").cloned())
            .collect())
    }

    /// `Filter.N.Name` with `Filter.N.Value.M` (spec 12.1).
    pub fn filters(&self) -> Result<Vec<Filter>, ApiError> {
        self.structs("Filter")?
            .into_iter()
            .map(|f| {
                let name = f
                    .required("Name")
                    .map_err(|_| ApiError::missing_parameter("Filter.N.Name"))?;
                Ok(Filter::new(name, f.list("Value")?))
            })
            .collect()
    }

    /// `Prefix.N.Key` / `Prefix.N.Value` pairs, checked against spec 12.1's limits.
    pub fn tags(&self, prefix: &str) -> Result<Vec<Tag>, ApiError> {
        let tags: Vec<Tag> = self
            .structs(prefix)?
            .into_iter()
            .map(|t| {
                Ok(Tag {
                    key: t
                        .required("Key")
                        .map_err(|_| ApiError::missing_parameter("Tag.N.Key"))?
                        .to_owned(),
                    value: t.get("Value").unwrap_or("").to_owned(),
                })
            })
            .collect::<Result<_, ApiError>>()?;
        check_tags(&tags)?;
        Ok(tags)
    }

    /// `TagSpecification.N.ResourceType` with its `Tag.M`, as (type, tags).
    pub fn tag_specifications(&self) -> Result<Vec<(String, Vec<Tag>)>, ApiError> {
        self.structs("TagSpecification")?
            .into_iter()
            .map(|spec| {
                let kind = spec
                    .required("ResourceType")
                    .map_err(|_| ApiError::missing_parameter("TagSpecification.N.ResourceType"))?
                    .to_owned();
                Ok((kind, spec.tags("Tag")?))
            })
            .collect()
    }

    /// `MaxResults` within `range`, as spec 12.1 requires.
    pub fn max_results(
        &self,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, ApiError> {
        match self.number::<u32>("MaxResults")? {
            Some(n) if !range.contains(&n) => Err(ApiError::invalid_value(
                "MaxResults",
                &n.to_string(),
                &format!("Use a value from {} to {}.", range.start(), range.end()),
            )),
            other => Ok(other),
        }
    }
}

fn parse_index(prefix: &str, index: &str) -> Result<u32, ApiError> {
    match index.parse::<u32>() {
        Ok(n) if n >= 1 && !index.starts_with('0') => Ok(n),
        _ => Err(ApiError::new(
            "InvalidParameterValue",
            format!("'{prefix}.{index}' is not a valid parameter: list indexes are numbers from 1"),
        )),
    }
}

/// spec 12.1: tag count, key and value lengths, and the reserved `aws:` prefix.
pub fn check_tags(tags: &[Tag]) -> Result<(), ApiError> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::new(
            "TagLimitExceeded",
            format!(
                "The maximum number of tags per resource is {MAX_TAGS}; this request has {}",
                tags.len()
            ),
        ));
    }
    for t in tags {
        if t.key.is_empty() || t.key.chars().count() > 128 {
            return Err(ApiError::invalid_value(
                "Tag.Key",
                &t.key,
                "Tag keys must be 1 to 128 characters long.",
            ));
        }
        if t.value.chars().count() > 256 {
            return Err(ApiError::invalid_value(
                "Tag.Value",
                &t.value,
                "Tag values must be at most 256 characters long.",
            ));
        }
        if t.key.starts_with("aws:") {
            return Err(ApiError::new(
                "InvalidParameterValue",
                format!(
                    "Tag keys starting with 'aws:' are reserved for internal use: '{}'",
                    t.key
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexed_lists_and_structures() {
        let p = Params::parse(
            b"Action=DescribeVpcs&VpcId.2=vpc-b&VpcId.1=vpc-a&Filter.1.Name=cidr&Filter.1.Value.1=10.0.0.0%2F16&Filter.2.Name=tag%3AName&Filter.2.Value.2=y&Filter.2.Value.1=x",
            "Version=2016-11-15",
        );
        assert_eq!(p.get("Version"), Some("2016-11-15"));
        assert_eq!(p.list("VpcId").unwrap(), ["vpc-a", "vpc-b"]);
        let f = p.filters().unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "cidr");
        assert_eq!(f[0].values, ["10.0.0.0/16"]);
        assert_eq!(f[1].name, "tag:Name");
        assert_eq!(f[1].values, ["x", "y"]);
    }

    #[test]
    fn numeric_index_order_not_lexical() {
        let pairs: Vec<(String, String)> = (1..=12)
            .map(|i| (format!("VpcId.{i}"), format!("v{i}")))
            .collect();
        let p = Params::from_pairs(pairs.iter().map(|(a, b)| (a.as_str(), b.as_str())));
        assert_eq!(
            p.list("VpcId").unwrap().last().map(String::as_str),
            Some("v12")
        );
    }

    #[test]
    fn tag_specifications() {
        let p = Params::parse(
            b"TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=Name&TagSpecification.1.Tag.1.Value=prod",
            "",
        );
        let specs = p.tag_specifications().unwrap();
        assert_eq!(specs[0].0, "vpc");
        assert_eq!(
            specs[0].1,
            [Tag {
                key: "Name".into(),
                value: "prod".into()
            }]
        );
        let bad = Params::parse(
            b"TagSpecification.1.ResourceType=vpc&TagSpecification.1.Tag.1.Key=aws%3Ax",
            "",
        );
        assert_eq!(
            bad.tag_specifications().unwrap_err().code,
            "InvalidParameterValue"
        );
    }

    #[test]
    fn bad_values_get_aws_codes() {
        let p = Params::parse(b"DryRun=yes&MaxResults=3&VpcId.0=x&Filter.1.Value.1=v", "");
        assert_eq!(p.dry_run().unwrap_err().code, "InvalidParameterValue");
        assert_eq!(
            p.max_results(5..=1000).unwrap_err().code,
            "InvalidParameterValue"
        );
        assert_eq!(p.list("VpcId").unwrap_err().code, "InvalidParameterValue");
        assert_eq!(p.filters().unwrap_err().code, "MissingParameter");
        assert_eq!(
            p.required("CidrBlock").unwrap_err().message,
            "The request must contain the parameter CidrBlock"
        );
        let many: Vec<Tag> = (0..51)
            .map(|i| Tag {
                key: format!("k{i}"),
                value: String::new(),
            })
            .collect();
        assert_eq!(check_tags(&many).unwrap_err().code, "TagLimitExceeded");
    }
}
