//! What one delivery may ask for, held while it is parsed and before any shared resource: a
//! bounded number of distinct changes, each with bounded names.

use std::collections::HashSet;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};

use super::{malformed, Rejection};
use crate::change::Change;

/// The most changes one delivery may carry, and the most entries of any list a payload names
/// them in (refs of a push, events of an envelope): each change is a call to every downstream
/// that wants it, and no sender sends more in one delivery (GitHub, GitLab and Gitea one ref;
/// Bitbucket and Azure DevOps the refs of one push; registries one event per delivery).
pub const MAX_CHANGES: usize = 100;
/// The longest git URL, branch, image domain or image path a change may carry (a ref name is
/// at most a few hundred bytes on every git host; a repository path as long).
pub const MAX_NAME_BYTES: usize = 2048;

/// A delivery's changes: distinct (a set, not a scan of a list), in first-seen order, at most
/// [`MAX_CHANGES`], each name at most [`MAX_NAME_BYTES`]. Past a bound the delivery is a 400:
/// no real sender goes there.
#[derive(Default)]
pub(crate) struct Changes {
    list: Vec<Change>,
    seen: HashSet<Change>,
}

impl Changes {
    pub(crate) fn push(&mut self, change: Change) -> Result<(), Rejection> {
        match &change {
            Change::Git { url, branch } => {
                bounded_name("git URL", url)?;
                bounded_name("branch", branch)?;
            }
            Change::Image(name) => {
                bounded_name("image domain", &name.domain)?;
                bounded_name("image name", &name.image)?;
            }
        }
        if self.seen.contains(&change) {
            return Ok(());
        }
        if self.list.len() == MAX_CHANGES {
            return Err(malformed(format!(
                "delivery carries more than {MAX_CHANGES} changes"
            )));
        }
        self.seen.insert(change.clone());
        self.list.push(change);
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub(crate) fn into_vec(self) -> Vec<Change> {
        self.list
    }
}

/// `text` when it is at most [`MAX_NAME_BYTES`] long; checked before a sender-sized string is
/// copied into each of a delivery's changes.
pub(crate) fn bounded_name<'a>(what: &str, text: &'a str) -> Result<&'a str, Rejection> {
    if text.len() > MAX_NAME_BYTES {
        return Err(malformed(format!(
            "{what} is {} bytes long (at most {MAX_NAME_BYTES})",
            text.len()
        )));
    }
    Ok(text)
}

/// A JSON list of at most [`MAX_CHANGES`] entries, refused while it is parsed: serde would
/// otherwise build the whole list before any check could look at it.
#[derive(Debug)]
pub(crate) struct Bounded<T>(pub(crate) Vec<T>);

impl<T> Default for Bounded<T> {
    fn default() -> Self {
        Bounded(Vec::new())
    }
}

impl<T> std::ops::Deref for Bounded<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Bounded<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(BoundedVisitor(PhantomData))
    }
}

struct BoundedVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for BoundedVisitor<T> {
    type Value = Bounded<T>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "a list of at most {MAX_CHANGES} entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bounded<T>, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            if items.len() == MAX_CHANGES {
                return Err(de::Error::custom(format_args!(
                    "a list of more than {MAX_CHANGES} entries"
                )));
            }
            items.push(item);
        }
        Ok(Bounded(items))
    }
}
