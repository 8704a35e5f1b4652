//! Stream-level metadata that publishers send (RTMP `onMetaData`), kept protocol-neutral.

/// A metadata value: the scalar types every container can express.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    /// A number (all RTMP numbers are doubles).
    Number(f64),
    /// A flag.
    Bool(bool),
    /// Text.
    Text(String),
}

/// Ordered key/value metadata, e.g. `width`, `framerate`, `encoder`.
pub type Metadata = Vec<(String, MetaValue)>;
