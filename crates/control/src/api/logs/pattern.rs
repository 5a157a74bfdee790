//! FilterLogEvents' filter patterns, the part of CloudWatch Logs' syntax
//! for unstructured events that openvpc supports: terms separated by
//! spaces, all of which must appear (`ERROR timeout`); quoted phrases that
//! must appear as written (`"Connection refused"`); `?term` terms of
//! which at least one must appear (`?ERROR ?WARN`); and `-term` terms that
//! must not appear (`ERROR -Exiting`). Matching is case-sensitive and by
//! whole terms, as AWS's is: `ERR` does not match `ERROR`, and `10.0.1.5`
//! does not match `10.0.1.55` ([`contains_term`]). JSON (`{ $.x = 1 }`), space-delimited (`[a, b]`) and regular
//! expression (`%…%`) patterns are refused by name rather than matched
//! wrongly.

/// One term and how it must occur.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Term {
    /// Must appear.
    All(String),
    /// At least one of the pattern's `?` terms must appear.
    Any(String),
    /// Must not appear.
    Not(String),
}

/// A parsed filter pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Pattern {
    terms: Vec<Term>,
}

impl Pattern {
    /// Parses `pattern`; the error says what is not supported or malformed.
    pub fn parse(pattern: &str) -> Result<Pattern, String> {
        let trimmed = pattern.trim();
        match trimmed.chars().next() {
            Some('{') => {
                return Err(format!(
                    "Invalid filter pattern '{pattern}': JSON filter patterns ({{ $.field = value }}) \
                     are not supported here; use terms, \"quoted phrases\" and ?term alternatives"
                ));
            }
            Some('[') => {
                return Err(format!(
                    "Invalid filter pattern '{pattern}': space-delimited filter patterns ([a, b, …]) \
                     are not supported here; use terms, \"quoted phrases\" and ?term alternatives"
                ));
            }
            Some('%') => {
                return Err(format!(
                    "Invalid filter pattern '{pattern}': regular expression filter patterns (%…%) \
                     are not supported here; use terms, \"quoted phrases\" and ?term alternatives"
                ));
            }
            _ => {}
        }
        let mut terms = Vec::new();
        let mut chars = trimmed.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let Some(&first) = chars.peek() else {
                break;
            };
            let kind = match first {
                '?' | '-' => {
                    chars.next();
                    Some(first)
                }
                _ => None,
            };
            let text = if chars.next_if_eq(&'"').is_some() {
                let mut text = String::new();
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => text.push(c),
                            None => {
                                return Err(format!(
                                    "Invalid filter pattern '{pattern}': it ends inside a quoted phrase"
                                ));
                            }
                        },
                        Some(c) => text.push(c),
                        None => {
                            return Err(format!(
                                "Invalid filter pattern '{pattern}': a quoted phrase has no closing quote"
                            ));
                        }
                    }
                }
                if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                    return Err(format!(
                        "Invalid filter pattern '{pattern}': put a space after a quoted phrase"
                    ));
                }
                text
            } else {
                let mut text = String::new();
                while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                    if c == '"' {
                        return Err(format!(
                            "Invalid filter pattern '{pattern}': a quote may only begin a term"
                        ));
                    }
                    text.push(c);
                }
                text
            };
            if text.is_empty() && kind.is_some() {
                return Err(format!(
                    "Invalid filter pattern '{pattern}': '?' and '-' must be followed by a term"
                ));
            }
            terms.push(match kind {
                Some('?') => Term::Any(text),
                Some(_) => Term::Not(text),
                None => Term::All(text),
            });
        }
        Ok(Pattern { terms })
    }

    /// Whether `message` matches: every required term appears, at least
    /// one `?` term appears (when there are any), and no `-` term does.
    pub fn matches(&self, message: &str) -> bool {
        let mut any_wanted = false;
        let mut any_found = false;
        for term in &self.terms {
            match term {
                Term::All(t) if !contains_term(message, t) => return false,
                Term::Not(t) if contains_term(message, t) => return false,
                Term::Any(t) => {
                    any_wanted = true;
                    any_found |= contains_term(message, t);
                }
                _ => {}
            }
        }
        !any_wanted || any_found
    }
}

/// Whether `term` occurs in `message` as a whole term: where the term
/// begins or ends with a word character (alphanumeric or `_`), the
/// message's character beside it must not be one.
fn contains_term(message: &str, term: &str) -> bool {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let (Some(first), Some(last)) = (term.chars().next(), term.chars().next_back()) else {
        return true;
    };
    message.match_indices(term).any(|(at, _)| {
        let before = message[..at].chars().next_back();
        let after = message[at + term.len()..].chars().next();
        let joined_before = word(first) && before.is_some_and(word);
        let joined_after = word(last) && after.is_some_and(word);
        !joined_before && !joined_after
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, message: &str) -> bool {
        Pattern::parse(pattern).unwrap().matches(message)
    }

    #[test]
    fn an_empty_pattern_matches_everything() {
        assert!(matches("", "anything"));
        assert!(matches("   ", "anything"));
    }

    #[test]
    fn every_plain_term_must_appear_case_sensitively() {
        assert!(matches("ERROR timeout", "ERROR: a timeout"));
        assert!(!matches("ERROR timeout", "ERROR: refused"));
        assert!(!matches("ERROR", "error"));
        // Whole terms only.
        assert!(!matches("ERR", "ERROR"));
        assert!(matches("ERROR", "[ERROR] boom"));
        assert!(!matches("10.0.1.5", "src 10.0.1.55"));
        assert!(matches("80", "dst 80 6"));
        assert!(!matches("80", "bytes 180"));
        // Flow-log records: an address and an action.
        assert!(matches(
            "10.0.1.5 REJECT",
            "2 123 eni-1 10.0.1.5 10.0.2.9 1 2 6 1 40 0 60 REJECT OK"
        ));
    }

    #[test]
    fn quoted_phrases_match_as_written() {
        assert!(matches("\"Connection refused\"", "x Connection refused y"));
        assert!(!matches("\"Connection refused\"", "Connection was refused"));
        assert!(matches(r#""say \"hi\"" x"#, r#"x say "hi""#));
    }

    #[test]
    fn question_mark_terms_are_alternatives() {
        assert!(matches("?ERROR ?WARN", "WARN disk"));
        assert!(matches("?ERROR ?WARN", "ERROR disk"));
        assert!(!matches("?ERROR ?WARN", "INFO disk"));
        // Required terms still apply alongside the alternatives.
        assert!(matches("disk ?ERROR ?WARN", "WARN disk"));
        assert!(!matches("disk ?ERROR ?WARN", "WARN cpu"));
    }

    #[test]
    fn minus_terms_exclude() {
        assert!(matches("ERROR -Exiting", "ERROR boom"));
        assert!(!matches("ERROR -Exiting", "ERROR Exiting"));
    }

    #[test]
    fn other_syntaxes_and_malformed_patterns_are_refused() {
        for bad in [
            "{ $.level = \"ERROR\" }",
            "[version, account]",
            "%ERR.*%",
            "\"unterminated",
            "a\"b",
            "?",
            "\"x\"y",
        ] {
            let e = Pattern::parse(bad).unwrap_err();
            assert!(e.starts_with("Invalid filter pattern"), "{bad}: {e}");
        }
    }
}
