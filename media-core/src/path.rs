//! A hub stream's name with its structure: a source stream (`demo`) as an
//! encoder publishes it, or a rendition of one (`demo/720p`) made from it by
//! the ladder. The rule "a source has no `/`" lives here and nowhere else.

use std::fmt;

/// What a stream or rendition name may be, in words (for error messages).
pub const NAME_RULE: &str = "1-64 characters: letters, digits, '_' or '-'";

/// Whether `name` is a valid stream (or rendition) name: the one rule the
/// config file, the API and the ladder share, since names become URL paths,
/// object keys and hub names.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A hub stream: a source, or a rendition of a source.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StreamPath {
    source: String,
    rendition: Option<String>,
}

/// Why a name is not a stream path.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    /// An empty source or rendition name.
    #[error("empty stream or rendition name in {0:?}")]
    Empty(String),
    /// More than one `/`.
    #[error("{0:?} has more than one '/': a stream path is SOURCE or SOURCE/RENDITION")]
    TooDeep(String),
}

impl StreamPath {
    /// The source stream `name` (which must not contain `/`).
    pub fn source(name: &str) -> Result<Self, PathError> {
        let path = Self::parse(name)?;
        if path.rendition.is_some() {
            return Err(PathError::TooDeep(name.to_owned()));
        }
        Ok(path)
    }

    /// Rendition `rendition` of source `source`.
    pub fn rendition(source: &str, rendition: &str) -> Result<Self, PathError> {
        Self::parse(&format!("{source}/{rendition}"))
    }

    /// `SOURCE` or `SOURCE/RENDITION`.
    pub fn parse(name: &str) -> Result<Self, PathError> {
        let (source, rendition) = match name.split_once('/') {
            Some((_, r)) if r.contains('/') => return Err(PathError::TooDeep(name.to_owned())),
            Some((s, r)) => (s, Some(r)),
            None => (name, None),
        };
        if source.is_empty() || rendition.is_some_and(str::is_empty) {
            return Err(PathError::Empty(name.to_owned()));
        }
        Ok(Self {
            source: source.to_owned(),
            rendition: rendition.map(str::to_owned),
        })
    }

    /// Whether `name` names a source stream (not a rendition, not malformed).
    pub fn is_source_name(name: &str) -> bool {
        Self::parse(name).is_ok_and(|p| p.is_source())
    }

    /// Whether this is a source (published by an encoder).
    pub fn is_source(&self) -> bool {
        self.rendition.is_none()
    }

    /// The source stream's name.
    pub fn source_name(&self) -> &str {
        &self.source
    }

    /// The rendition's name, for a rendition.
    pub fn rendition_name(&self) -> Option<&str> {
        self.rendition.as_deref()
    }
}

impl fmt::Display for StreamPath {
    /// The hub name: `SOURCE` or `SOURCE/RENDITION`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.rendition {
            Some(r) => write!(f, "{}/{r}", self.source),
            None => f.write_str(&self.source),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_renditions_and_nonsense() {
        let s = StreamPath::parse("demo").expect("source");
        assert!(s.is_source());
        assert_eq!(s.source_name(), "demo");
        assert_eq!(s.to_string(), "demo");
        let r = StreamPath::rendition("demo", "720p").expect("rendition");
        assert!(!r.is_source());
        assert_eq!(r.rendition_name(), Some("720p"));
        assert_eq!(r.to_string(), "demo/720p");
        assert_eq!(StreamPath::parse("demo/720p"), Ok(r));
        assert!(StreamPath::is_source_name("demo"));
        assert!(!StreamPath::is_source_name("demo/720p"));
        assert!(!StreamPath::is_source_name(""));
        assert!(matches!(
            StreamPath::parse("a/b/c"),
            Err(PathError::TooDeep(_))
        ));
        assert!(matches!(StreamPath::parse("/b"), Err(PathError::Empty(_))));
        assert!(matches!(StreamPath::parse("a/"), Err(PathError::Empty(_))));
        assert!(matches!(
            StreamPath::source("a/b"),
            Err(PathError::TooDeep(_))
        ));
    }
}
