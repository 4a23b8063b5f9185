//! One WebSocket connection, from the upgrade to the close frame: a single task that owns the
//! socket, the registry's [`DeviceGuard`], the device's queue, the table of offered calls and
//! the connection's timers.
//!
//! States, named for what they expect next:
//! ```text
//! upgrade ──► ExpectListen ──listen, token valid, device admitted──► Connected ──► closing
//!                 │ no listen in time: 4008          │ token expired: 4001
//!                 │ other first message: 4000        │ silent for dead_after: 1001
//!                 │ bad token: 4001, too many: 4009  │ queue overflowed: 1008 ...
//! ```
//! `Connected` selects over three sources: a frame from the client, an event for the device
//! (call offers from the router, presence from the registry) and the nearest of its timers
//! ([`Timers`]). Leaving it drops the device guard (the device is offline at once) and the call
//! table (every open call is reported gone) before the close handshake, which is bounded by
//! [`CLOSE_GRACE`].

use std::borrow::Cow;
use std::time::{Duration, Instant, SystemTime};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};

use super::calls::{Calls, TooManyCalls};
use super::protocol::{
    CallAction, ClientMessage, CloseCode, ErrorCode, Parameters, ParseError, ServerMessage,
    TokenText,
};
use super::Shared;
use crate::device::{self, CallEvent, DeviceReceiver, ToDevice};
use crate::registry::{DeviceGuard, RegistryError};
use crate::resource::format_rfc3339;
use crate::token::Claims;

/// How long the close handshake may take: sending our close frame, then waiting for the
/// client's. The device is already offline by then.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// RFC 6455 §5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
const MAX_CLOSE_REASON_BYTES: usize = 123;

/// Serves one upgraded connection until it ends.
pub(super) async fn run(socket: &mut WebSocket, shared: &Shared) {
    let end = match expect_listen(socket, shared).await {
        Ok(mut session) => {
            let end = session.run().await;
            // Offline and calls gone now, not after the close handshake.
            drop(session);
            end
        }
        Err(end) => end,
    };
    close(socket, end).await;
}

/// Why a connection ends.
#[derive(Debug)]
enum End {
    /// We close it: send this close frame, then wait briefly for the client's.
    Close(CloseCode, Cow<'static, str>),
    /// The client sent a close frame: tungstenite has queued the reply, which the next read
    /// flushes.
    ClosedByPeer,
    /// The transport failed or reached its end: nothing more can be sent.
    Lost,
}

/// The timers of a connected device, as instants (the sans-IO part of the session).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Timers {
    /// When the token stops being valid (its `exp` plus the verification leeway).
    expires: Instant,
    /// When the client was last heard from (any frame).
    last_heard: Instant,
    /// When to send the next ping.
    next_ping: Instant,
    ping_interval: Duration,
    dead_after: Duration,
}

/// What a timer asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The token expired without a refresh.
    Expired,
    /// Nothing was heard for `dead_after`.
    Dead,
    /// Time to ping.
    Ping,
}

/// A connected device's task state. Owned by its task; nothing in it is shared.
struct Session<'a> {
    socket: &'a mut WebSocket,
    shared: &'a Shared,
    device: DeviceGuard,
    events: DeviceReceiver,
    calls: Calls,
    registered: bool,
    /// The current token's `exp`.
    expires_at: SystemTime,
    timers: Timers,
}

/// What woke the session.
enum Step {
    Frame(Option<Result<Message, axum::Error>>),
    Event(Option<ToDevice>),
    Timer,
}

/// `ExpectListen`: waits for `listen`, verifies its token and admits the device.
async fn expect_listen<'a>(
    socket: &'a mut WebSocket,
    shared: &'a Shared,
) -> Result<Session<'a>, End> {
    let deadline = Instant::now() + shared.config.listen_timeout;
    let token = loop {
        let frame = tokio::select! {
            frame = socket.recv() => frame,
            () = tokio::time::sleep_until(deadline.into()) => {
                return Err(End::Close(CloseCode::ListenTimeout, "no listen in time".into()));
            }
        };
        let Some(text) = text_of(frame)? else {
            continue;
        };
        match ClientMessage::parse(&text) {
            Ok(ClientMessage::Listen { token }) => break token,
            Ok(_) | Err(ParseError::UnknownType) => {
                return Err(End::Close(
                    CloseCode::Protocol,
                    "first message must be listen".into(),
                ));
            }
            Err(error) => return Err(End::Close(CloseCode::Protocol, error.to_string().into())),
        }
    };

    let now = SystemTime::now();
    let claims = verify(shared, &token, now)?;
    let (sender, events) = device::channel(shared.config.outbound_queue);
    let device = shared
        .registry
        .connect(
            claims.identity().clone(),
            claims.grants.voice.incoming,
            sender,
            now,
        )
        .map_err(|error| match error {
            RegistryError::TooManyDevices { .. } => {
                End::Close(CloseCode::TooManyDevices, error.to_string().into())
            }
            RegistryError::IncomingNotGranted | RegistryError::TooManySubscriptions { .. } => {
                End::Close(CloseCode::ServerError, "unexpected registry error".into())
            }
        })?;
    let span = tracing::Span::current();
    span.record("identity", device.identity().as_str());
    span.record("device_id", tracing::field::display(device.device_id()));
    tracing::debug!("connected");

    let started = Instant::now();
    let config = &shared.config;
    Ok(Session {
        socket,
        shared,
        calls: Calls::new(device.device_id()),
        device,
        events,
        registered: false,
        expires_at: claims.expires_at,
        timers: Timers {
            expires: expiry(shared, &claims, now, started),
            last_heard: started,
            next_ping: started + config.ping_interval,
            ping_interval: config.ping_interval,
            dead_after: config.dead_after,
        },
    })
}

impl Session<'_> {
    /// `Connected`: serves the device until the connection ends, and says why.
    ///
    /// The handlers' futures are boxed: each lives for one message and is up to ~1 KiB, while
    /// inline they would size every idle connection's task for its busiest moment.
    async fn run(&mut self) -> End {
        if let Err(end) = Box::pin(self.send_connected()).await {
            return end;
        }
        loop {
            // The queue overflows only while the session is not draining it, so checking here,
            // and while a frame is being written (`send_frame`), catches every overflow.
            if self.events.has_overflowed() {
                return slow_reader();
            }
            let wake = self.timers.next();
            let step = tokio::select! {
                frame = self.socket.recv() => Step::Frame(frame),
                event = self.events.recv() => Step::Event(event),
                () = tokio::time::sleep_until(wake.into()) => Step::Timer,
            };
            let outcome = match step {
                Step::Frame(frame) => Box::pin(self.handle_frame(frame)).await,
                Step::Event(Some(event)) => Box::pin(self.handle_event(event)).await,
                // The device guard holds a sender, so the queue cannot close under us.
                Step::Event(None) => Err(End::Close(
                    CloseCode::ServerError,
                    "device queue closed".into(),
                )),
                Step::Timer => Box::pin(self.handle_timers(Instant::now())).await,
            };
            if let Err(end) = outcome {
                return end;
            }
        }
    }

    async fn handle_frame(
        &mut self,
        frame: Option<Result<Message, axum::Error>>,
    ) -> Result<(), End> {
        let text = text_of(frame)?;
        self.timers.last_heard = Instant::now();
        self.device.touch(SystemTime::now());
        let Some(text) = text else {
            return Ok(());
        };
        match ClientMessage::parse(&text) {
            Ok(message) => {
                tracing::trace!(kind = message.kind(), "message");
                self.handle_message(message).await
            }
            Err(ParseError::NotEnvelope) => Err(End::Close(
                CloseCode::Protocol,
                ParseError::NotEnvelope.to_string().into(),
            )),
            Err(error @ ParseError::UnknownType) => {
                self.send_error(ErrorCode::UnknownType, &error.to_string())
                    .await
            }
            Err(error @ ParseError::BadPayload { .. }) => {
                self.send_error(ErrorCode::BadPayload, &error.to_string())
                    .await
            }
        }
    }

    async fn handle_message(&mut self, message: ClientMessage) -> Result<(), End> {
        match message {
            ClientMessage::Listen { .. } => {
                Err(End::Close(CloseCode::Protocol, "already listening".into()))
            }
            ClientMessage::Register => match self.device.set_incoming(true) {
                Ok(()) => {
                    self.registered = true;
                    self.send_json(ServerMessage::Ready {}.to_json()).await
                }
                Err(error) => Err(End::Close(
                    CloseCode::NotPermitted,
                    error.to_string().into(),
                )),
            },
            ClientMessage::Unregister => {
                // Unregistering needs no grant, so this cannot be refused.
                let _ = self.device.set_incoming(false);
                self.registered = false;
                self.send_json(ServerMessage::Offline {}.to_json()).await
            }
            ClientMessage::Presence { status } => {
                self.device.set_status(status);
                Ok(())
            }
            ClientMessage::Subscribe { identities } => match self.device.subscribe(&identities) {
                Ok(()) => Ok(()),
                Err(error) => {
                    self.send_error(ErrorCode::TooManySubscriptions, &error.to_string())
                        .await
                }
            },
            ClientMessage::Unsubscribe { identities } => {
                self.device.unsubscribe(&identities);
                Ok(())
            }
            ClientMessage::Call { call_sid, action } => {
                let event = match action {
                    CallAction::Ringing => CallEvent::Ringing,
                    CallAction::Answer { sdp } => CallEvent::Answer { sdp },
                    CallAction::Reject => CallEvent::Reject,
                    CallAction::Hangup => CallEvent::Hangup,
                    CallAction::Dtmf { digits } => CallEvent::Dtmf { digits },
                };
                match self.calls.reply(&call_sid, event) {
                    Ok(()) => Ok(()),
                    Err(_) => {
                        self.send_error(ErrorCode::UnknownCall, "no open call with this callsid")
                            .await
                    }
                }
            }
            ClientMessage::Token { token } => self.refresh(&token).await,
        }
    }

    /// `token {token}`: a valid token for the same identity moves the expiry and replaces the
    /// incoming grant; anything else closes with 4001.
    async fn refresh(&mut self, token: &TokenText) -> Result<(), End> {
        let now = SystemTime::now();
        let claims = verify(self.shared, token, now)?;
        if claims.identity() != self.device.identity() {
            return Err(End::Close(
                CloseCode::InvalidToken,
                "token is for another identity".into(),
            ));
        }
        self.timers.expires = expiry(self.shared, &claims, now, Instant::now());
        let incoming = claims.grants.voice.incoming;
        self.device.set_incoming_allowed(incoming);
        if self.registered && !incoming {
            // Losing the grant unregistered the device: say so, as for `unregister`.
            self.registered = false;
            self.send_json(ServerMessage::Offline {}.to_json()).await?;
        }
        tracing::debug!(token_id = %claims.token_id, "token refreshed");
        self.expires_at = claims.expires_at;
        self.send_connected().await
    }

    async fn handle_event(&mut self, event: ToDevice) -> Result<(), End> {
        let json = match event {
            ToDevice::Invite {
                call_sid,
                from,
                to,
                sdp,
                parameters,
                replies,
            } => {
                if let Err(TooManyCalls) = self.calls.offer(&call_sid, replies) {
                    tracing::warn!(%call_sid, open = self.calls.len(), "too many calls; offer rejected");
                    return Ok(());
                }
                ServerMessage::Invite {
                    callsid: &call_sid,
                    from: &from,
                    to: &to,
                    sdp: &sdp,
                    parameters: Parameters(&parameters),
                }
                .to_json()
            }
            ToDevice::Cancel { call_sid } => {
                // A call the client already rejected or hung up needs no cancel.
                if !self.calls.withdraw(&call_sid) {
                    return Ok(());
                }
                ServerMessage::Cancel { callsid: &call_sid }.to_json()
            }
            ToDevice::Hangup { call_sid, reason } => {
                if !self.calls.withdraw(&call_sid) {
                    return Ok(());
                }
                ServerMessage::Hangup {
                    callsid: &call_sid,
                    reason: &reason,
                }
                .to_json()
            }
            ToDevice::Presence(resource) => ServerMessage::Presence(&resource).to_json(),
        };
        self.send_json(json).await
    }

    async fn handle_timers(&mut self, now: Instant) -> Result<(), End> {
        match self.timers.poll(now) {
            Some(Due::Expired) => Err(End::Close(CloseCode::InvalidToken, "token expired".into())),
            Some(Due::Dead) => Err(End::Close(
                CloseCode::NotResponding,
                "not responding".into(),
            )),
            // RFC 6455 §5.5.2: the client must answer with a pong, which counts as life.
            Some(Due::Ping) => self.send_frame(Message::Ping(Bytes::new())).await,
            None => Ok(()),
        }
    }

    /// `connected`, with the token's `exp` as the client knows it (without our leeway).
    async fn send_connected(&mut self) -> Result<(), End> {
        let json = ServerMessage::Connected {
            identity: self.device.identity(),
            device_id: self.device.device_id(),
            expires_at: format_rfc3339(self.expires_at),
        }
        .to_json();
        self.send_json(json).await
    }

    async fn send_error(&mut self, code: ErrorCode, message: &str) -> Result<(), End> {
        let json = ServerMessage::Error { code, message }.to_json();
        self.send_json(json).await
    }

    async fn send_json(&mut self, json: String) -> Result<(), End> {
        self.send_frame(Message::Text(Utf8Bytes::from(json))).await
    }

    /// Writes one frame. A client that does not take it within `dead_after` is not responding;
    /// an overflow of the device's queue meanwhile makes it a slow reader.
    async fn send_frame(&mut self, frame: Message) -> Result<(), End> {
        let write = tokio::time::timeout(self.timers.dead_after, self.socket.send(frame));
        tokio::select! {
            biased;
            () = self.events.overflowed() => Err(slow_reader()),
            written = write => match written {
                Ok(Ok(())) => Ok(()),
                Ok(Err(_)) => Err(End::Lost),
                Err(_) => Err(End::Close(CloseCode::NotResponding, "not reading".into())),
            },
        }
    }
}

impl Timers {
    /// The nearest instant at which [`Timers::poll`] has something to do.
    fn next(&self) -> Instant {
        self.expires
            .min(self.last_heard + self.dead_after)
            .min(self.next_ping)
    }

    /// What is due at `now`, most serious first; a ping due is rescheduled.
    fn poll(&mut self, now: Instant) -> Option<Due> {
        if now >= self.expires {
            return Some(Due::Expired);
        }
        if now >= self.last_heard + self.dead_after {
            return Some(Due::Dead);
        }
        if now >= self.next_ping {
            self.next_ping = now + self.ping_interval;
            return Some(Due::Ping);
        }
        None
    }
}

/// Verifies a token for `listen` or `token`; a refusal closes with 4001 and the reason.
fn verify(shared: &Shared, token: &TokenText, now: SystemTime) -> Result<Claims, End> {
    shared.keys.verify(&token.0, now).map_err(|error| {
        tracing::debug!(%error, "token refused");
        End::Close(CloseCode::InvalidToken, error.to_string().into())
    })
}

/// The instant a token stops being valid: its `exp` plus the leeway, on the monotonic clock.
fn expiry(shared: &Shared, claims: &Claims, now: SystemTime, started: Instant) -> Instant {
    let until = (claims.expires_at + shared.keys.config().leeway)
        .duration_since(now)
        .unwrap_or(Duration::ZERO);
    // A verified token lives at most 24 h, so the sum fits; fall back to now if it did not.
    started.checked_add(until).unwrap_or(started)
}

/// The text of a data frame, `None` for a ping or pong; the end of the connection otherwise.
fn text_of(frame: Option<Result<Message, axum::Error>>) -> Result<Option<Utf8Bytes>, End> {
    match frame {
        Some(Ok(Message::Text(text))) => Ok(Some(text)),
        // tungstenite answers pings itself (RFC 6455 §5.5.2).
        Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(None),
        Some(Ok(Message::Binary(_))) => Err(End::Close(
            CloseCode::Protocol,
            "binary frames are not part of tandem.v1".into(),
        )),
        Some(Ok(Message::Close(_))) => Err(End::ClosedByPeer),
        Some(Err(error)) => Err(if is_too_big(error) {
            End::Close(CloseCode::MessageTooBig, "message too big".into())
        } else {
            End::Lost
        }),
        None => Err(End::Lost),
    }
}

/// Whether a read failed on the message or frame size limit.
fn is_too_big(error: axum::Error) -> bool {
    matches!(
        error.into_inner().downcast_ref::<tungstenite::Error>(),
        Some(tungstenite::Error::Capacity(
            tungstenite::error::CapacityError::MessageTooLong { .. }
        ))
    )
}

fn slow_reader() -> End {
    End::Close(CloseCode::SlowReader, "slow reader".into())
}

/// Ends the connection: our close frame if we close it, then the client's close frame, each
/// within [`CLOSE_GRACE`].
async fn close(socket: &mut WebSocket, end: End) {
    match end {
        End::Lost => {
            tracing::debug!("connection lost");
            return;
        }
        End::ClosedByPeer => tracing::debug!("closed by the client"),
        End::Close(code, reason) => {
            tracing::debug!(code = code.as_u16(), %reason, "closing");
            let frame = CloseFrame {
                code: code.as_u16(),
                reason: Utf8Bytes::from(truncate(reason, MAX_CLOSE_REASON_BYTES).into_owned()),
            };
            let sent = tokio::time::timeout(CLOSE_GRACE, socket.send(Message::Close(Some(frame))));
            if !matches!(sent.await, Ok(Ok(()))) {
                return;
            }
        }
    }
    // RFC 6455 §7.1.1: after the close handshake the server closes the TCP connection; reading
    // on lets tungstenite flush its reply to a client's close and see the client's reply to ours.
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        while let Some(Ok(_)) = socket.recv().await {}
    })
    .await;
}

/// `text` cut to at most `limit` bytes on a character boundary.
fn truncate(text: Cow<'static, str>, limit: usize) -> Cow<'static, str> {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(text[..end].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timers(start: Instant) -> Timers {
        Timers {
            expires: start + Duration::from_secs(100),
            last_heard: start,
            next_ping: start + Duration::from_secs(10),
            ping_interval: Duration::from_secs(10),
            dead_after: Duration::from_secs(30),
        }
    }

    #[test]
    fn pings_every_interval_until_the_silence_is_too_long() {
        let start = Instant::now();
        let mut timers = timers(start);
        let mut pings = Vec::new();
        let now = loop {
            let now = timers.next();
            match timers.poll(now) {
                Some(Due::Ping) => pings.push(now - start),
                Some(due) => {
                    assert_eq!(due, Due::Dead);
                    break now;
                }
                None => panic!("woken for nothing at {:?}", now - start),
            }
        };
        assert_eq!(
            pings,
            [Duration::from_secs(10), Duration::from_secs(20)],
            "a ping at 30 s is moot: the client is dead then"
        );
        assert_eq!(now - start, Duration::from_secs(30));
    }

    #[test]
    fn hearing_from_the_client_postpones_death() {
        let start = Instant::now();
        let mut timers = timers(start);
        timers.last_heard = start + Duration::from_secs(25);
        assert_eq!(
            timers.poll(start + Duration::from_secs(30)),
            Some(Due::Ping)
        );
        assert_eq!(timers.poll(start + Duration::from_secs(31)), None);
        assert_eq!(timers.next(), start + Duration::from_secs(40));
        assert_eq!(
            timers.poll(start + Duration::from_secs(55)),
            Some(Due::Dead)
        );
    }

    #[test]
    fn expiry_comes_first() {
        let start = Instant::now();
        let mut timers = timers(start);
        timers.expires = start + Duration::from_secs(5);
        assert_eq!(timers.next(), start + Duration::from_secs(5));
        assert_eq!(
            timers.poll(start + Duration::from_secs(40)),
            Some(Due::Expired)
        );
    }

    #[test]
    fn close_reasons_are_cut_on_character_boundaries() {
        assert_eq!(truncate("short".into(), 123), "short");
        let long = "é".repeat(100);
        let cut = truncate(long.into(), MAX_CLOSE_REASON_BYTES);
        assert_eq!(cut.len(), 122);
        assert!(cut.chars().all(|character| character == 'é'));
    }
}
