//! Every resource bound of the RTMP layer, in one place, each with its own error.

use std::time::Duration;

/// A client must finish the handshake within this time.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A client must reach `publish` or `play` within this time after the handshake.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// A publisher that sends nothing for this long is disconnected.
pub const PUBLISHER_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// A player whose socket accepts nothing for this long is disconnected.
pub const PLAYER_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest chunk size a peer may announce (real encoders use 4 KiB to 64 KiB).
pub const MAX_CHUNK_SIZE: u32 = 1 << 20;
/// The largest message a peer may send (a 4K keyframe is a few MiB).
pub const MAX_MESSAGE_SIZE: u32 = 8 << 20;
/// Chunk streams that may be open at once on one connection.
pub const MAX_CHUNK_STREAMS: usize = 64;
/// Connections the server holds at once by default; more are closed on accept.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The chunk size Ferry's client sends with (fewer headers and syscalls than
/// the default 128; what OBS uses, so every receiver takes it).
pub const OUTGOING_CHUNK_SIZE: u32 = 4096;
/// The chunk size the server sends to its clients with: most video frames go
/// out as one chunk, so a player's write holds one chunk header and one
/// slice of the shared payload per frame instead of one per 4 KiB (SRS
/// sends with 60000 by default, and players of every kind read it).
pub const SERVER_CHUNK_SIZE: u32 = 60_000;
/// The acknowledgement window Ferry asks peers to use.
pub const WINDOW_ACK_SIZE: u32 = 2_500_000;
/// Bytes a player's write buffer collects before it is flushed.
pub const PLAYER_BATCH_BYTES: usize = 256 << 10;
/// A player's writes are at most this often: packets arriving in between go out
/// together, trading this much latency for far fewer wake-ups and syscalls.
/// 200 ms: five writes per player per second, 0.75x SRS's CPU per player
/// (SRS merges 350 ms); RTMP players buffer seconds, so it is not felt.
pub const PLAYER_FLUSH_INTERVAL: Duration = Duration::from_millis(200);
/// Bytes all partial messages of one connection may hold together: one maximal
/// message plus room for the other streams' small ones (without it, 64 chunk
/// streams × [`MAX_MESSAGE_SIZE`] could be held per connection).
pub const MAX_BUFFERED_BYTES: usize = MAX_MESSAGE_SIZE as usize + (4 << 20);
/// Protocol replies (pongs, acknowledgements) a peer may leave unsent before it
/// is disconnected: a ping flood from a client that never reads cannot grow
/// the write buffer.
pub const MAX_QUEUED_REPLY_BYTES: usize = 64 << 10;
/// The longest application or stream name accepted (bytes).
pub const MAX_NAME_LEN: usize = 128;
/// Connections one address may hold at once by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 100;
/// Connection slots kept for publishers by default: players and idle clients
/// cannot take the last ones, so a real encoder still gets in.
pub const DEFAULT_RESERVED_PUBLISHER_SLOTS: usize = 16;
/// How long a player may wait for a stream that is not live by default; zero
/// waits for ever.
pub const DEFAULT_PLAYER_WAIT: Duration = Duration::from_secs(60);
/// After refusing a publish, what the client still sends is read (and dropped)
/// for this long before closing, so encoders (OBS) see the refusal and not a
/// send error on their `FCUnpublish`.
pub const REFUSAL_LINGER: Duration = Duration::from_millis(500);
/// A client pushing media (restream) whose receiver accepts nothing for this
/// long gives up, so a stalled receiver is reported instead of the task
/// looking "running" for ever.
pub const PUSH_WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After a failed accept (out of descriptors), wait this long instead of spinning.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
/// The range a configured player write interval is clamped to.
pub const WRITE_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_millis(1)..=Duration::from_secs(1);
