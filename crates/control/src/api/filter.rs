//! Describe filters (spec 12.1): several filters are ANDed, the values of
//! one filter are ORed, and values may use `*` (any run of characters) and
//! `?` (zero or one character), with `\` escaping either.

/// One `Filter.N`: a name and the values it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub name: String,
    pub values: Vec<String>,
}

impl Filter {
    pub fn new(name: impl Into<String>, values: Vec<String>) -> Self {
        Filter {
            name: name.into(),
            values,
        }
    }

    /// True if any of the resource's values for this filter matches any of
    /// the filter's patterns.
    pub fn matches<'a>(&self, candidates: impl IntoIterator<Item = &'a str>) -> bool {
        let candidates: Vec<&str> = candidates.into_iter().collect();
        self.values
            .iter()
            .any(|pattern| candidates.iter().any(|c| wildcard_match(pattern, c)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Char(char),
    Star,
    Optional,
}

fn tokens(pattern: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        out.push(match c {
            '\\' => Token::Char(chars.next().unwrap_or('\\')),
            '*' => Token::Star,
            '?' => Token::Optional,
            c => Token::Char(c),
        });
    }
    out
}

/// AWS filter wildcards over whole strings. Dynamic programming over
/// (pattern, text) positions: linear memory, no backtracking blow-up on
/// hostile patterns.
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let p = tokens(pattern);
    let t: Vec<char> = text.chars().collect();
    // reach[j]: the first i tokens can match the first j characters.
    let mut reach = vec![false; t.len() + 1];
    reach[0] = true;
    for tok in &p {
        let mut next = vec![false; t.len() + 1];
        for j in 0..=t.len() {
            if !reach[j] {
                continue;
            }
            match tok {
                Token::Char(c) => {
                    if t.get(j) == Some(c) {
                        next[j + 1] = true;
                    }
                }
                Token::Optional => {
                    next[j] = true;
                    if j < t.len() {
                        next[j + 1] = true;
                    }
                }
                Token::Star => {
                    for n in next.iter_mut().skip(j) {
                        *n = true;
                    }
                    break;
                }
            }
        }
        reach = next;
    }
    reach[t.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("vpc-*", "vpc-0123"));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("vpc-*", "subnet-1"));
        // spec 12.1: `?` is zero or one character.
        assert!(wildcard_match("10.0.?.0/24", "10.0.1.0/24"));
        assert!(wildcard_match("10.0.?.0/24", "10.0..0/24"));
        assert!(!wildcard_match("10.0.?.0/24", "10.0.12.0/24"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(wildcard_match("*prod*", "my-prod-vpc"));
    }

    #[test]
    fn values_are_ored() {
        let f = Filter::new("vpc-id", vec!["vpc-a".into(), "vpc-b".into()]);
        assert!(f.matches(["vpc-b"]));
        assert!(!f.matches(["vpc-c"]));
        assert!(!f.matches([]));
    }

    proptest! {
        /// Without wildcards a pattern matches exactly itself; `*` matches anything.
        #[test]
        fn literal_and_star(s in "[a-z0-9./-]{0,20}", t in "[a-z0-9./-]{0,20}") {
            prop_assert_eq!(wildcard_match(&s, &t), s == t);
            prop_assert!(wildcard_match("*", &t));
            let prefix: String = s.chars().take(3).collect();
            let pattern = format!("{prefix}*");
            prop_assert!(wildcard_match(&pattern, &s));
        }
    }
}
