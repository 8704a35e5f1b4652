//! A player's session: hub events become RTMP messages, written at most once
//! per slot of a process-wide grid, and a player of a stream that never goes
//! live is let go.

use std::sync::Arc;

use media_core::{Codec, Event, MetaValue, TrackKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Server;
use super::negotiate::{Reads, on_status};
use crate::RtmpError;
use crate::amf0::{self, Amf0Value};
use crate::flv::FlvTag;
use crate::limits::*;
use crate::message::{self, Command, Message, type_id, user_control};
use crate::transport::{Transport, csid};

impl Server {
    pub(super) async fn playing<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        mut sub: media_core::Subscriber,
        stream_id: u32,
        reads: Reads,
        tick: Option<&Notify>,
    ) -> Result<(), RtmpError> {
        let mut out = PlayWriter {
            stream_id,
            last_ts: 0,
            initial_start: sub.is_live(),
            reads,
            video: Codec::H264,
            video_withheld: false,
        };
        // Writes are paced on a shared grid of `write_interval` slots: while
        // packets keep coming, a player wakes once per slot, drains what arrived and
        // writes it in one syscall, instead of waking and writing once per packet.
        // An idle player waits on the stream instead, so the first write after a
        // quiet spell (the GOP cache on join) goes out at once.
        let mut next_slot: Option<tokio::time::Instant> = None;
        // A stream that is not live must go live within `player_wait`, or the
        // player is told it does not exist (players on made-up names do not
        // hold connections for ever); once it has been live, it is waited for.
        let wait = self.config.player_wait;
        let mut waiting = !sub.is_live() && !wait.is_zero();
        // One timer for the whole session, polled only while waiting: no
        // timer is made per wake-up on the hot path.
        let give_up = tokio::time::sleep(wait);
        tokio::pin!(give_up);
        loop {
            let paced = next_slot.is_some();
            let slot = next_slot.unwrap_or_else(tokio::time::Instant::now);
            tokio::select! {
                msg = t.read_message() => {
                    if let Message::Command(Command { name, .. }) = msg?
                        && matches!(name.as_str(), "deleteStream" | "closeStream")
                    {
                        return Ok(());
                    }
                }
                () = &mut give_up, if waiting => {
                    self.metrics.player_wait_expired.inc();
                    info!(stream = sub.name(), waited = ?wait, "player closed: the stream did not go live");
                    t.queue_command(
                        stream_id,
                        &on_status("error", "NetStream.Play.StreamNotFound", "the stream is not live"),
                    );
                    let _ = timeout(PLAYER_WRITE_TIMEOUT, t.flush()).await;
                    return Ok(());
                }
                ev = sub.recv(), if !paced => {
                    let Some(ev) = ev else { return Ok(()) };
                    if matches!(ev, Event::Started) {
                        waiting = false;
                    }
                    out.write(t, ev);
                    drain(&mut sub, &mut out, t);
                    next_slot = Some(next_after(t.pending(), tokio::time::Instant::now(), self.config.write_interval));
                }
                () = pace(tick, slot), if paced => {
                    waiting = false;
                    drain(&mut sub, &mut out, t);
                    next_slot = (t.pending() > 0).then(|| next_after(t.pending(), slot, self.config.write_interval));
                }
            }
            if t.pending() > 0 {
                timeout(PLAYER_WRITE_TIMEOUT, t.flush())
                    .await
                    .map_err(|_| RtmpError::Timeout("player stopped reading"))??;
            }
        }
    }
}

/// Waits for `slot`: on the runtime's shared tick when there is one (one timer
/// for every player of the thread), else on a timer of this player's own.
async fn pace(tick: Option<&Notify>, slot: tokio::time::Instant) {
    match tick {
        Some(tick) if slot > tokio::time::Instant::now() => tick.notified().await,
        _ => tokio::time::sleep_until(slot).await,
    }
}

/// Wakes every paced player of this runtime at each slot of the grid.
pub(super) fn spawn_ticker(
    cancel: CancellationToken,
    interval: std::time::Duration,
) -> Arc<Notify> {
    let tick = Arc::new(Notify::new());
    let notify = tick.clone();
    tokio::spawn(async move {
        let first = flush_slot(tokio::time::Instant::now() + interval, interval);
        let mut every = tokio::time::interval_at(first, interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = every.tick() => notify.notify_waiters(),
            }
        }
    });
    tick
}

/// When a player writes next: at once if its batch was full (more is queued, so
/// pacing must not cap its bitrate), else in the next slot.
fn next_after(
    pending: usize,
    now: tokio::time::Instant,
    interval: std::time::Duration,
) -> tokio::time::Instant {
    if pending >= PLAYER_BATCH_BYTES {
        now
    } else {
        flush_slot(now + interval, interval)
    }
}

/// Rounds `at` to the nearest slot of the process-wide grid of flush slots, so every player of every
/// stream wakes at the same instants: the runtime then serves them all in one
/// wake-up instead of sleeping and waking once per player.
fn flush_slot(at: tokio::time::Instant, interval: std::time::Duration) -> tokio::time::Instant {
    static EPOCH: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let step = interval.as_micros().max(1);
    let since = at.saturating_duration_since(epoch).as_micros();
    let slots = (since + step / 2) / step;
    let micros = u64::try_from(slots * step).unwrap_or(u64::MAX);
    epoch + std::time::Duration::from_micros(micros)
}

/// Moves every ready event into the write buffer, up to one batch.
fn drain<S: AsyncRead + AsyncWrite + Unpin>(
    sub: &mut media_core::Subscriber,
    out: &mut PlayWriter,
    t: &mut Transport<S>,
) {
    while t.pending() < PLAYER_BATCH_BYTES {
        let Some(ev) = sub.try_recv() else { break };
        out.write(t, ev);
    }
}
/// Turns hub events into RTMP messages for one player.
struct PlayWriter {
    stream_id: u32,
    last_ts: u32,
    initial_start: bool,
    /// The Enhanced RTMP codecs the player announced in `connect`.
    reads: Reads,
    /// The codec of the stream's video track now.
    video: Codec,
    /// The video is in a codec this player did not say it reads: it gets
    /// the audio only (a legacy player fed HEVC would show garbage).
    video_withheld: bool,
}

impl PlayWriter {
    fn write<S: AsyncRead + AsyncWrite + Unpin>(&mut self, t: &mut Transport<S>, ev: Event) {
        let sid = self.stream_id;
        match ev {
            Event::Started => {
                if !std::mem::replace(&mut self.initial_start, false) {
                    t.queue_control(
                        type_id::USER_CONTROL,
                        &message::user_control_body(user_control::STREAM_BEGIN, sid),
                    );
                    t.queue_command(
                        sid,
                        &on_status(
                            "status",
                            "NetStream.Play.PublishNotify",
                            "publisher started",
                        ),
                    );
                }
            }
            Event::Stopped => {
                self.initial_start = false;
                t.queue_command(
                    sid,
                    &on_status(
                        "status",
                        "NetStream.Play.UnpublishNotify",
                        "publisher stopped",
                    ),
                );
                t.queue_control(
                    type_id::USER_CONTROL,
                    &message::user_control_body(user_control::STREAM_EOF, sid),
                );
            }
            Event::Metadata(meta) => {
                let props = meta
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            MetaValue::Number(n) => Amf0Value::Number(*n),
                            MetaValue::Bool(b) => Amf0Value::Boolean(*b),
                            MetaValue::Text(s) => Amf0Value::String(s.clone()),
                        };
                        (k.clone(), v)
                    })
                    .collect();
                let body = amf0::encode_all(&[
                    Amf0Value::String("onMetaData".into()),
                    Amf0Value::EcmaArray(props),
                ]);
                t.queue(csid::DATA, self.last_ts, type_id::DATA_AMF0, sid, &body);
            }
            Event::Track(track) => {
                if track.kind() == TrackKind::Video {
                    self.video = track.codec;
                    let withhold = !self.reads.reads(track.codec);
                    if withhold && !self.video_withheld {
                        info!(codec = ?track.codec, "video withheld: the player did not announce it (Enhanced RTMP fourCcList)");
                        t.queue_command(
                            sid,
                            &on_status(
                                "warning",
                                "NetStream.Play.VideoUnsupported",
                                "the video is HEVC or AV1: connect with fourCcList [\"hvc1\", \"av01\"] (Enhanced RTMP) to get it; audio only",
                            ),
                        );
                    }
                    self.video_withheld = withhold;
                    if withhold {
                        return;
                    }
                }
                t.queue_tag(sid, &FlvTag::config(&track, self.last_ts));
            }
            Event::Packet(p) => {
                if p.track == TrackKind::Video && self.video_withheld {
                    return;
                }
                let tag = FlvTag::packet_in(&p, self.video);
                self.last_ts = tag.timestamp;
                t.queue_tag(sid, &tag);
            }
        }
    }
}
