//! Flux's `Change`: what fluxd's `POST /v11/notify` takes, and its JSON wire format.
//!
//! The wire format lives here and nowhere else: `{"Kind":"git","Source":{"URL":…,"Branch":…}}`
//! with exactly those keys (`../shared/fluxd-contract.md` §2).

use serde::Serialize;

/// One thing fluxd should look at again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A push to a git repository: fluxd re-polls it if it is the repo and branch it syncs.
    Git { url: String, branch: String },
}

impl Change {
    /// A git change from a pushed ref: `refs/heads/` is dropped, tags keep `refs/tags/…`.
    pub fn git(url: impl Into<String>, git_ref: &str) -> Change {
        let branch = git_ref.strip_prefix("refs/heads/").unwrap_or(git_ref);
        Change::Git {
            url: url.into(),
            branch: branch.to_owned(),
        }
    }

    /// The compact JSON body of one notify call.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = match self {
            Change::Git { url, branch } => Wire {
                kind: "git",
                source: WireSource::Git { url, branch },
            },
        };
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_vec(&wire).unwrap_or_default()
    }
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Git { url, branch } => write!(f, "git {url} {branch}"),
        }
    }
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "Kind")]
    kind: &'static str,
    #[serde(rename = "Source")]
    source: WireSource<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireSource<'a> {
    Git {
        #[serde(rename = "URL")]
        url: &'a str,
        #[serde(rename = "Branch")]
        branch: &'a str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn branch_ref_loses_refs_heads_and_tags_keep_their_prefix() {
        let cases = [
            ("refs/heads/main", "main"),
            ("refs/heads/feature/x", "feature/x"),
            ("refs/tags/v1.2.3", "refs/tags/v1.2.3"),
            ("main", "main"),
            ("", ""),
        ];
        for (git_ref, branch) in cases {
            assert_eq!(
                Change::git("git@h:o/r.git", git_ref),
                Change::Git {
                    url: "git@h:o/r.git".into(),
                    branch: branch.into()
                },
                "ref {git_ref:?}"
            );
        }
    }

    #[test]
    fn git_json_has_exactly_the_contract_keys() {
        let json = Change::git("git@github.com:org/repo.git", "refs/heads/main").to_json();
        assert_eq!(
            std::str::from_utf8(&json).unwrap(),
            r#"{"Kind":"git","Source":{"URL":"git@github.com:org/repo.git","Branch":"main"}}"#
        );
    }

    #[test]
    fn json_escapes_odd_characters() {
        let json = Change::git("git@h:o/\"r\".git", "refs/heads/ü\n").to_json();
        let back: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(back["Source"]["URL"], "git@h:o/\"r\".git");
        assert_eq!(back["Source"]["Branch"], "ü\n");
    }
}
