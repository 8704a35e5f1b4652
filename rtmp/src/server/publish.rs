//! A publisher's session: its messages go through [`crate::ingest::Ingest`]
//! into the hub until it unpublishes, goes silent or is kicked.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::timeout;
use tracing::{debug, info};

use super::Server;
use super::negotiate::on_status;
use crate::RtmpError;
use crate::ingest::{Ingest, metadata};
use crate::limits::*;
use crate::message::Message;
use crate::transport::Transport;

impl Server {
    pub(super) async fn publishing<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        t: &mut Transport<S>,
        publisher: &media_core::Publisher,
        stream_id: u32,
    ) -> Result<(), RtmpError> {
        let mut ingest = Ingest::default();
        // One kick watcher for the whole session, not one per message.
        let kicked = publisher.kicked();
        tokio::pin!(kicked);
        loop {
            // A kick drops the message being read; the connection closes anyway.
            let msg = tokio::select! {
                read = timeout(PUBLISHER_IDLE_TIMEOUT, t.read_message()) => {
                    read.map_err(|_| RtmpError::Timeout("publisher sent nothing"))??
                }
                () = &mut kicked => {
                    info!(stream = %publisher.name(), "publisher kicked");
                    t.queue_command(
                        stream_id,
                        &on_status("error", "NetStream.Publish.Denied", "kicked by an operator"),
                    );
                    let _ = t.flush().await;
                    return Ok(());
                }
            };
            match msg {
                Message::Video { timestamp, data } => ingest.video(publisher, timestamp, &data)?,
                Message::Audio { timestamp, data } => ingest.audio(publisher, timestamp, &data)?,
                Message::Data(values) => {
                    if let Some(meta) = metadata(&values) {
                        publisher.set_metadata(meta);
                    }
                }
                Message::Command(cmd) => match cmd.name.as_str() {
                    "deleteStream" | "closeStream" | "FCUnpublish" => {
                        t.queue_command(
                            stream_id,
                            &on_status("status", "NetStream.Unpublish.Success", "unpublished"),
                        );
                        t.flush().await?;
                        return Ok(());
                    }
                    other => debug!(command = other, "ignoring command while publishing"),
                },
                _ => {}
            }
            t.flush().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf0::Amf0Value;
    use media_core::MetaValue;

    #[test]
    fn metadata_from_both_forms_and_none_from_lone_set_data_frame() {
        let obj = Amf0Value::EcmaArray(vec![
            ("width".into(), Amf0Value::Number(1280.0)),
            ("nested".into(), Amf0Value::Null),
        ]);
        let want = Some(vec![("width".to_owned(), MetaValue::Number(1280.0))]);
        let set = [
            Amf0Value::String("@setDataFrame".into()),
            Amf0Value::String("onMetaData".into()),
            obj.clone(),
        ];
        assert_eq!(metadata(&set), want);
        assert_eq!(metadata(&set[1..]), want);
        assert_eq!(metadata(&set[..1]), None);
    }
}
