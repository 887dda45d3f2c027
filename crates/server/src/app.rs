//! One app's live state: its channels, their subscribers and presence
//! rosters. This is the server's "db" (in mini-redis terms).
//!
//! All state sits behind one synchronous mutex that is never held across an
//! `.await`: every operation takes the lock, changes state, queues the
//! resulting frames on the affected outboxes (which never waits), and lets go.
//! Queuing under the lock is what gives every subscriber the same order of
//! events on a channel — a joiner's `subscription_succeeded` is always before
//! any `member_*` that follows it.

use crate::cluster::{Cluster, JoinResult};
use crate::config::AppConfig;
use crate::metrics::{Gauges, Metrics};
use crate::outbox::{Frame, Outbox};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use whosin_protocol::frame::{server, Data};
use whosin_protocol::roster::subscription_succeeded_for;
use whosin_protocol::sign::verify_channel_auth;
use whosin_protocol::{
    ChannelKind, ChannelName, CloseCode, Join, Leave, PresenceData, Roster, SubscribeData,
};

/// A subscriber of one channel.
#[derive(Debug)]
struct Subscriber {
    outbox: Outbox,
    /// The presence user this connection holds on the channel.
    user_id: Option<Arc<str>>,
    /// While a clustered presence subscribe waits for the cluster roster,
    /// frames for it are held here and sent after `subscription_succeeded`,
    /// so nothing that happens meanwhile is missed.
    pending: Option<Vec<Frame>>,
}

/// Frames held for one pending subscriber at most; more means it is closed
/// as too slow, as with a full outbound queue.
const MAX_PENDING: usize = 1024;

/// One occupied channel. It exists only while it has subscribers.
#[derive(Debug, Default)]
struct Channel {
    subscribers: HashMap<u64, Subscriber>,
    /// Present for presence channels.
    roster: Option<Roster<u64>>,
}

impl Channel {
    /// An empty channel of `kind`: presence channels carry a roster.
    fn new(kind: ChannelKind) -> Channel {
        Channel {
            subscribers: HashMap::new(),
            roster: (kind == ChannelKind::Presence).then(Roster::new),
        }
    }

    /// Queues `frame` to every subscriber but `except`.
    fn broadcast(&mut self, frame: &Frame, except: Option<u64>) {
        self.broadcast_except(frame, |id, _| Some(id) == except);
    }

    /// Queues `frame` to every subscriber for which `skip` is false, in one
    /// pass (the exclusion is checked as the sends go, never by a scan first).
    fn broadcast_except(&mut self, frame: &Frame, skip: impl Fn(u64, &Outbox) -> bool) {
        for (id, sub) in self.subscribers.iter_mut() {
            if skip(*id, &sub.outbox) {
                continue;
            }
            match &mut sub.pending {
                Some(held) if held.len() < MAX_PENDING => held.push(frame.clone()),
                Some(_) => sub.outbox.close(CloseCode::OverCapacity),
                None => sub.outbox.send(frame.clone()),
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    channels: HashMap<String, Channel>,
    /// Users signed in with `pusher:signin`, for `terminate_connections`.
    signed_in: HashMap<Arc<str>, Vec<Outbox>>,
}

/// Why a subscription was refused; sent as `pusher:subscription_error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeError {
    /// HTTP-like status: 400 bad request, 401 bad signature, 403 full, 413 too large.
    pub status: u16,
    /// What went wrong and what to do.
    pub message: String,
}

impl SubscribeError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        SubscribeError {
            status,
            message: message.into(),
        }
    }
}

/// Why a client event was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientEventError {
    /// Not a private or presence channel.
    #[error("client events are only allowed on private and presence channels, not {0:?}")]
    PublicChannel(String),
    /// The sender is not subscribed to the channel.
    #[error("subscribe to {0:?} before sending client events to it")]
    NotSubscribed(String),
    /// The payload is too large.
    #[error("client event data is {len} bytes; the limit is {max}")]
    TooLarge {
        /// Size.
        len: usize,
        /// Limit.
        max: usize,
    },
}

/// What is known about one occupied channel, for the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Connections subscribed.
    pub subscription_count: usize,
    /// Distinct users, for presence channels.
    pub user_count: Option<usize>,
}

/// A served app.
#[derive(Debug)]
pub struct App {
    /// Its configuration.
    pub config: AppConfig,
    state: Mutex<State>,
    connections: AtomicUsize,
    metrics: Arc<Metrics>,
    /// Set when the server shuts down: every connection is about to be
    /// closed, so telling each one that the others left would only be noise
    /// (and O(n²) frames).
    shutting_down: AtomicBool,
    /// The Redis adapter, when this node is part of a cluster.
    cluster: OnceLock<Arc<Cluster>>,
}

impl App {
    /// A new app with no connections.
    pub fn new(config: AppConfig, metrics: Arc<Metrics>) -> App {
        App {
            config,
            state: Mutex::new(State::default()),
            connections: AtomicUsize::new(0),
            metrics,
            shutting_down: AtomicBool::new(false),
            cluster: OnceLock::new(),
        }
    }

    /// Joins this app to a cluster (once, at start).
    pub fn set_cluster(&self, cluster: Arc<Cluster>) {
        let _ = self.cluster.set(cluster);
    }

    fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Sends `frame` to the channel's subscribers: through the cluster bus
    /// when clustered (every node delivers), else directly. `except` is the
    /// connection (and its socket id) to leave out.
    fn fan_out(
        &self,
        channel: &mut Channel,
        name: &str,
        frame: Frame,
        except: Option<(u64, &str)>,
    ) {
        match self.cluster() {
            Some(c) => c.publish(&self.config.id, name, &frame, except.map(|e| e.1)),
            None => channel.broadcast(&frame, except.map(|e| e.0)),
        }
    }

    /// Delivers a frame that came over the cluster bus to local subscribers.
    pub fn deliver(&self, channel_name: &str, frame: &Frame, except_socket: Option<&str>) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        let Some(channel) = state.channels.get_mut(channel_name) else {
            return;
        };
        channel.broadcast_except(frame, |_, o| Some(&*o.socket_id) == except_socket);
    }

    /// Sends a fresh `subscription_succeeded` frame (the cluster-wide
    /// roster) to every local subscriber of a presence channel (after a
    /// cluster resync).
    pub fn resend_roster(&self, channel_name: &str, frame: Frame) {
        let mut state = self.state();
        if let Some(channel) = state.channels.get_mut(channel_name) {
            channel.broadcast(&frame, None);
        }
    }

    /// channel → user → info of the presence this node holds (for a resync).
    pub fn local_presence(&self) -> crate::cluster::LocalPresence {
        let state = self.state();
        state
            .channels
            .iter()
            .filter_map(|(name, c)| {
                let r = c.roster.as_ref()?;
                Some((
                    name.clone(),
                    r.iter()
                        .map(|(u, m)| (u.to_owned(), m.info.clone()))
                        .collect(),
                ))
            })
            .collect()
    }

    /// Local subscriptions per channel (for a resync).
    pub fn local_occupancy(&self) -> Vec<(String, usize)> {
        self.state()
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), c.subscribers.len()))
            .collect()
    }

    /// Stops announcing departures: the server is closing every connection.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to keep serving other clients.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a connection slot, or `false` when the quota is used up.
    pub fn try_open_connection(&self) -> bool {
        let max = self.config.max_connections;
        self.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a connection slot back.
    pub fn close_connection(&self) {
        self.connections.fetch_sub(1, Ordering::AcqRel);
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.connections.load(Ordering::Acquire)
    }

    /// Checks a subscription request: name, signature, presence data.
    fn check(
        &self,
        outbox: &Outbox,
        sub: &SubscribeData,
    ) -> Result<(ChannelKind, Option<PresenceData>), SubscribeError> {
        let name = ChannelName::parse(&sub.channel)
            .map_err(|e| SubscribeError::new(400, format!("invalid channel name: {e}")))?;
        let kind = name.kind();
        if !kind.needs_auth() {
            return Ok((kind, None));
        }
        let auth = sub.auth.as_deref().ok_or_else(|| {
            SubscribeError::new(
                401,
                format!("{name} needs an auth signature from your auth endpoint"),
            )
        })?;
        if kind == ChannelKind::Presence && sub.channel_data.is_none() {
            return Err(SubscribeError::new(
                400,
                "presence channels need channel_data with a user_id",
            ));
        }
        if let Err(e) = verify_channel_auth(
            &self.config.key,
            &self.config.secret,
            &outbox.socket_id,
            name.as_str(),
            sub.channel_data.as_deref(),
            auth,
        ) {
            Metrics::inc(&self.metrics.auth_failures);
            return Err(SubscribeError::new(
                401,
                format!("{e}: check that your auth endpoint signs with this app's key and secret"),
            ));
        }
        if kind != ChannelKind::Presence {
            return Ok((kind, None));
        }
        let data = sub.channel_data.as_deref().unwrap_or_default();
        let pd = PresenceData::parse(data, self.config.max_user_info_bytes).map_err(|e| {
            let status = match e {
                whosin_protocol::frame::PresenceDataError::UserInfoTooLarge { .. } => 413,
                _ => 400,
            };
            SubscribeError::new(status, e.to_string())
        })?;
        Ok((kind, Some(pd)))
    }

    /// Subscribes a connection. On success the `subscription_succeeded` (with
    /// the roster, for presence) is already queued to it and `member_added`
    /// to the others when the user is new; the presence user id is returned
    /// for the connection's own bookkeeping. In a cluster, presence reads and
    /// writes the cluster roster (one Redis round trip).
    pub async fn subscribe(
        &self,
        outbox: &Outbox,
        sub: &SubscribeData,
    ) -> Result<Option<Arc<str>>, SubscribeError> {
        let (kind, presence) = self.check(outbox, sub)?;
        match (self.cluster().cloned(), presence) {
            (Some(cluster), Some(pd)) => self.subscribe_clustered(&cluster, outbox, sub, pd).await,
            (cluster, presence) => {
                let (user, new) = self.subscribe_local(outbox, sub, kind, presence)?;
                if let (Some(c), true) = (cluster, new) {
                    c.occupancy(&self.config.id, &sub.channel, 1);
                }
                Ok(user)
            }
        }
    }

    /// The single-node subscribe; also public and private channels in a
    /// cluster. Returns the user and whether the subscription is new.
    fn subscribe_local(
        &self,
        outbox: &Outbox,
        sub: &SubscribeData,
        kind: ChannelKind,
        presence: Option<PresenceData>,
    ) -> Result<(Option<Arc<str>>, bool), SubscribeError> {
        let mut state = self.state();
        let channel = state
            .channels
            .entry(sub.channel.clone())
            .or_insert_with(|| Channel::new(kind));
        let user_id: Option<Arc<str>> = presence.as_ref().map(|p| Arc::from(p.user_id.as_str()));

        if let Some(existing) = channel.subscribers.get(&outbox.id) {
            // A repeated subscribe changes nothing; confirm it again.
            if existing.user_id != user_id {
                return Err(SubscribeError::new(
                    400,
                    "already subscribed to this channel as another user; unsubscribe first",
                ));
            }
            outbox.send(Frame::from(succeeded(
                &sub.channel,
                channel.roster.as_ref(),
            )));
            return Ok((user_id, false));
        }

        let mut added = None;
        if let (Some(roster), Some(pd)) = (channel.roster.as_mut(), presence.as_ref()) {
            if !roster.admits(&pd.user_id, self.config.max_presence_members) {
                if channel.subscribers.is_empty() {
                    state.channels.remove(&sub.channel);
                }
                return Err(self.full(&sub.channel));
            }
            if roster.join(&pd.user_id, pd.user_info.clone(), outbox.id) == Join::Added {
                added = Some(server::member_added(
                    &sub.channel,
                    &pd.user_id,
                    &pd.user_info,
                ));
            }
        }
        channel.subscribers.insert(
            outbox.id,
            Subscriber {
                outbox: outbox.clone(),
                user_id: user_id.clone(),
                pending: None,
            },
        );
        outbox.send(Frame::from(succeeded(
            &sub.channel,
            channel.roster.as_ref(),
        )));
        if let Some(frame) = added {
            channel.broadcast(&Frame::from(frame), Some(outbox.id));
        }
        Ok((user_id, true))
    }

    fn full(&self, channel: &str) -> SubscribeError {
        SubscribeError::new(
            403,
            format!(
                "{channel} is full: it holds the maximum of {} members",
                self.config.max_presence_members
            ),
        )
    }

    /// Presence subscribe in a cluster: the local roster (per-node dedupe)
    /// and a pending subscriber entry are set under the lock, together with
    /// queueing the Redis join, so Redis sees this node's joins and leaves in
    /// the order they happened here.
    async fn subscribe_clustered(
        &self,
        cluster: &Arc<Cluster>,
        outbox: &Outbox,
        sub: &SubscribeData,
        pd: PresenceData,
    ) -> Result<Option<Arc<str>>, SubscribeError> {
        let user: Arc<str> = Arc::from(pd.user_id.as_str());
        let reply = {
            let mut state = self.state();
            let channel = state
                .channels
                .entry(sub.channel.clone())
                .or_insert_with(|| Channel::new(ChannelKind::Presence));
            if channel.subscribers.contains_key(&outbox.id) {
                None
            } else {
                let roster = channel.roster.get_or_insert_with(Roster::new);
                // This node's members are a subset of the cluster's: a user
                // refused here would be refused there. Checked here too, so the
                // cap holds while Redis is away.
                if !roster.admits(&pd.user_id, self.config.max_presence_members) {
                    if channel.subscribers.is_empty() {
                        state.channels.remove(&sub.channel);
                    }
                    return Err(self.full(&sub.channel));
                }
                roster.join(&pd.user_id, pd.user_info.clone(), outbox.id);
                channel.subscribers.insert(
                    outbox.id,
                    Subscriber {
                        outbox: outbox.clone(),
                        user_id: Some(user.clone()),
                        pending: Some(Vec::new()),
                    },
                );
                Some(cluster.join_start(
                    &self.config.id,
                    &sub.channel,
                    &pd.user_id,
                    &pd.user_info,
                    self.config.max_presence_members,
                    &outbox.socket_id,
                ))
            }
        };
        let Some(reply) = reply else {
            return self.resubscribe_clustered(cluster, outbox, sub, pd).await;
        };
        // Not given a timeout of its own: the writer answers in order and
        // every Redis operation it runs is bounded by the response timeout.
        // Serving a partial local roster after a wait of our own would not
        // be corrected later (no resync follows), unlike a Redis failure.
        let result = reply.await.ok().flatten();
        let mut state = self.state();
        let Some(channel) = state.channels.get_mut(&sub.channel) else {
            return Err(SubscribeError::new(
                503,
                "the channel went away while joining; try again",
            ));
        };
        let Some(me) = channel.subscribers.get_mut(&outbox.id) else {
            return Err(SubscribeError::new(503, "unsubscribed while joining"));
        };
        let held = me.pending.take().unwrap_or_default();
        let snapshot = match result {
            Some(JoinResult::Full) => {
                channel.subscribers.remove(&outbox.id);
                if let Some(r) = channel.roster.as_mut() {
                    r.leave(&pd.user_id, &outbox.id);
                }
                if channel.subscribers.is_empty() {
                    state.channels.remove(&sub.channel);
                }
                return Err(self.full(&sub.channel));
            }
            Some(JoinResult::Joined { members, .. }) => subscription_succeeded_for(
                &sub.channel,
                members.iter().map(|(u, i)| (u.as_str(), i.as_str())),
            ),
            None => {
                // Redis is unreachable: serve from what this node knows.
                let local = succeeded(&sub.channel, channel.roster.as_ref());
                let first = channel
                    .roster
                    .as_ref()
                    .and_then(|r| r.get(&pd.user_id))
                    .is_some_and(|m| m.connections().len() == 1);
                if first {
                    let frame = Frame::from(server::member_added(
                        &sub.channel,
                        &pd.user_id,
                        &pd.user_info,
                    ));
                    channel.broadcast(&frame, Some(outbox.id));
                }
                local
            }
        };
        outbox.send(Frame::from(snapshot));
        for f in held {
            outbox.send(f);
        }
        cluster.occupancy(&self.config.id, &sub.channel, 1);
        Ok(Some(user))
    }

    /// A repeated subscribe of a connection already in a clustered presence
    /// channel: confirmed again with the cluster-wide roster (this node's
    /// alone would make the client drop everyone on other nodes), or this
    /// node's when Redis does not answer.
    async fn resubscribe_clustered(
        &self,
        cluster: &Arc<Cluster>,
        outbox: &Outbox,
        sub: &SubscribeData,
        pd: PresenceData,
    ) -> Result<Option<Arc<str>>, SubscribeError> {
        let Some(members) = cluster.roster(&self.config.id, &sub.channel).await else {
            return self
                .subscribe_local(outbox, sub, ChannelKind::Presence, Some(pd))
                .map(|r| r.0);
        };
        let state = self.state();
        let same_user = state
            .channels
            .get(&sub.channel)
            .and_then(|c| c.subscribers.get(&outbox.id))
            .map(|me| me.user_id.as_deref() == Some(pd.user_id.as_str()));
        match same_user {
            Some(true) => {
                outbox.send(Frame::from(subscription_succeeded_for(
                    &sub.channel,
                    members.iter().map(|(u, i)| (u.as_str(), i.as_str())),
                )));
                Ok(Some(Arc::from(pd.user_id.as_str())))
            }
            // Another user, or gone meanwhile: the local rules answer.
            _ => {
                drop(state);
                self.subscribe_local(outbox, sub, ChannelKind::Presence, Some(pd))
                    .map(|r| r.0)
            }
        }
    }

    /// Removes a connection from a channel, announcing `member_removed` when
    /// it held the user's last connection (in a cluster: the last anywhere),
    /// and dropping the channel when it is left empty. Returns whether the
    /// connection was subscribed.
    pub fn unsubscribe(&self, conn: u64, channel_name: &str) -> bool {
        let mut state = self.state();
        let Some(channel) = state.channels.get_mut(channel_name) else {
            return false;
        };
        let Some(sub) = channel.subscribers.remove(&conn) else {
            return false;
        };
        if let (Some(roster), Some(user)) = (channel.roster.as_mut(), sub.user_id.as_deref()) {
            if roster.leave(user, &conn) == Leave::Removed {
                match self.cluster() {
                    // The cluster decides whether this was the last
                    // connection anywhere, and announces it.
                    Some(c) => c.leave(&self.config.id, channel_name, user),
                    None if !self.shutting_down.load(Ordering::Acquire) => {
                        let frame = Frame::from(server::member_removed(channel_name, user));
                        channel.broadcast(&frame, None);
                    }
                    None => {}
                }
            }
        }
        if let Some(c) = self.cluster() {
            c.occupancy(&self.config.id, channel_name, -1);
        }
        if channel.subscribers.is_empty() {
            state.channels.remove(channel_name);
        }
        true
    }

    /// Relays a client event to the channel's other subscribers (on every
    /// node), adding the sender's `user_id` on presence channels.
    pub fn client_event(
        &self,
        outbox: &Outbox,
        channel_name: &str,
        event: &str,
        data: &str,
    ) -> Result<(), ClientEventError> {
        if !ChannelKind::of(channel_name).allows_client_events() {
            return Err(ClientEventError::PublicChannel(channel_name.to_owned()));
        }
        if data.len() > self.config.max_event_data_bytes {
            return Err(ClientEventError::TooLarge {
                len: data.len(),
                max: self.config.max_event_data_bytes,
            });
        }
        let mut state = self.state();
        let Some(channel) = state.channels.get_mut(channel_name) else {
            return Err(ClientEventError::NotSubscribed(channel_name.to_owned()));
        };
        let Some(sub) = channel.subscribers.get(&outbox.id) else {
            return Err(ClientEventError::NotSubscribed(channel_name.to_owned()));
        };
        let frame = Frame::from(server::event(
            event,
            channel_name,
            Data::Raw(data),
            sub.user_id.as_deref(),
        ));
        self.fan_out(
            channel,
            channel_name,
            frame,
            Some((outbox.id, &outbox.socket_id)),
        );
        Ok(())
    }

    /// Publishes an event from the REST API: encoded once per channel, sent
    /// to every subscriber (on every node) but the connection with
    /// `except_socket`.
    pub fn trigger(
        &self,
        channels: &[String],
        event: &str,
        data: &str,
        except_socket: Option<&str>,
    ) {
        for name in channels {
            let frame = Frame::from(server::event(event, name, Data::Str(data), None));
            if let Some(c) = self.cluster() {
                c.publish(&self.config.id, name, &frame, except_socket);
                continue;
            }
            self.deliver(name, &frame, except_socket);
        }
    }

    /// Occupied channels with their facts, cluster-wide when clustered
    /// (falling back to this node's view when Redis does not answer).
    pub async fn channels_all(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        let Some(c) = self.cluster().cloned() else {
            return self.channels(prefix);
        };
        let Some(occ) = c.occupancy_all(&self.config.id).await else {
            return self.channels(prefix);
        };
        let mut out = Vec::new();
        for (name, subs) in occ.into_iter().filter(|(n, _)| n.starts_with(prefix)) {
            let user_count = if ChannelKind::of(&name) == ChannelKind::Presence {
                Some(
                    c.roster(&self.config.id, &name)
                        .await
                        .map_or(0, |r| r.len()),
                )
            } else {
                None
            };
            out.push((
                name,
                ChannelInfo {
                    subscription_count: subs,
                    user_count,
                },
            ));
        }
        out
    }

    /// One channel's facts, cluster-wide when clustered.
    pub async fn channel_info_all(&self, name: &str) -> Option<ChannelInfo> {
        let Some(c) = self.cluster().cloned() else {
            return self.channel_info(name);
        };
        let Some(occ) = c.occupancy_all(&self.config.id).await else {
            return self.channel_info(name);
        };
        let subs = *occ.get(name)?;
        let user_count = if ChannelKind::of(name) == ChannelKind::Presence {
            Some(c.roster(&self.config.id, name).await.map_or(0, |r| r.len()))
        } else {
            None
        };
        Some(ChannelInfo {
            subscription_count: subs,
            user_count,
        })
    }

    /// User ids of a presence channel, cluster-wide when clustered.
    pub async fn users_all(&self, name: &str) -> Option<Vec<String>> {
        let Some(c) = self.cluster().cloned() else {
            return self.users(name);
        };
        match c.roster(&self.config.id, name).await {
            Some(r) if r.is_empty() => None,
            Some(r) => {
                let mut ids: Vec<String> = r.into_iter().map(|(u, _)| u).collect();
                ids.sort();
                Some(ids)
            }
            None => self.users(name),
        }
    }

    /// Facts about one channel, `None` when it is not occupied.
    pub fn channel_info(&self, name: &str) -> Option<ChannelInfo> {
        self.state().channels.get(name).map(info_of)
    }

    /// Occupied channels whose names start with `prefix`, sorted by name.
    pub fn channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        let mut list: Vec<_> = self
            .state()
            .channels
            .iter()
            .filter(|(n, _)| n.starts_with(prefix))
            .map(|(n, c)| (n.clone(), info_of(c)))
            .collect();
        list.sort_by(|a, b| a.0.cmp(&b.0));
        list
    }

    /// User ids present in a presence channel; `None` when it is not occupied.
    pub fn users(&self, name: &str) -> Option<Vec<String>> {
        let state = self.state();
        let roster = state.channels.get(name)?.roster.as_ref()?;
        let mut ids: Vec<String> = roster.iter().map(|(id, _)| id.to_owned()).collect();
        ids.sort();
        Some(ids)
    }

    /// Closes (4009) every connection of a user, whether signed in or
    /// present in any presence channel. Returns how many were asked to close.
    pub fn terminate_user(&self, user_id: &str) -> usize {
        match self.cluster() {
            // Every node (this one included) closes its own connections.
            Some(c) => {
                c.terminate(&self.config.id, user_id);
                0
            }
            None => self.terminate_local(user_id),
        }
    }

    /// Closes (4009) this node's connections of a user.
    pub fn terminate_local(&self, user_id: &str) -> usize {
        let state = self.state();
        let mut ids: Vec<&Outbox> = Vec::new();
        for channel in state.channels.values() {
            let Some(member) = channel.roster.as_ref().and_then(|r| r.get(user_id)) else {
                continue;
            };
            for conn in member.connections() {
                if let Some(sub) = channel.subscribers.get(conn) {
                    ids.push(&sub.outbox);
                }
            }
        }
        if let Some(list) = state.signed_in.get(user_id) {
            ids.extend(list.iter());
        }
        ids.sort_by_key(|o| o.id);
        ids.dedup_by_key(|o| o.id);
        for o in &ids {
            o.close(CloseCode::Unauthorized);
        }
        ids.len()
    }

    /// Records a signed-in user for a connection.
    pub fn sign_in(&self, outbox: &Outbox, user_id: &str) {
        let mut state = self.state();
        let list = state.signed_in.entry(Arc::from(user_id)).or_default();
        if !list.iter().any(|o| o.id == outbox.id) {
            list.push(outbox.clone());
        }
    }

    /// Forgets a connection's sign-in.
    pub fn sign_out(&self, conn: u64, user_id: &str) {
        let mut state = self.state();
        if let Some(list) = state.signed_in.get_mut(user_id) {
            list.retain(|o| o.id != conn);
            if list.is_empty() {
                state.signed_in.remove(user_id);
            }
        }
    }

    /// Gauges of this app for `/metrics`.
    pub fn gauges(&self) -> Gauges {
        let state = self.state();
        Gauges {
            connections: self.connection_count() as u64,
            channels: state.channels.len() as u64,
            presence_members: state
                .channels
                .values()
                .filter_map(|c| c.roster.as_ref())
                .map(|r| r.len() as u64)
                .sum(),
        }
    }
}

/// `subscription_succeeded` for a channel, with its roster when it is a
/// presence channel (from the entries escaped at join: a joiner's roster is
/// a concatenation, not an encoding of every member).
fn succeeded(channel: &str, roster: Option<&Roster<u64>>) -> String {
    match roster {
        Some(r) => r.subscription_succeeded(channel),
        None => server::subscription_succeeded(channel, None),
    }
}

fn info_of(c: &Channel) -> ChannelInfo {
    ChannelInfo {
        subscription_count: c.subscribers.len(),
        user_count: c.roster.as_ref().map(Roster::len),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outbox::Mailbox;
    use whosin_protocol::frame::ServerFrame;
    use whosin_protocol::sign::channel_auth;

    async fn join(app: &App, id: u64, user: &str) -> (Outbox, Arc<Mailbox>) {
        let socket_id: Arc<str> = Arc::from(format!("1.{id}"));
        let (outbox, rx) = Outbox::new(id, socket_id.clone(), 16, Arc::new(Metrics::default()));
        let data = format!(r#"{{"user_id":"{user}"}}"#);
        let sub = SubscribeData {
            channel: "presence-x".into(),
            auth: Some(channel_auth(
                "k",
                "s",
                &socket_id,
                "presence-x",
                Some(&data),
            )),
            channel_data: Some(data),
        };
        app.subscribe(&outbox, &sub).await.unwrap();
        (outbox, rx)
    }

    fn drain(rx: &mut Arc<Mailbox>) -> Vec<ServerFrame> {
        let mut frames = Vec::new();
        rx.drain_into(&mut frames, usize::MAX);
        frames
            .iter()
            .map(|f| ServerFrame::parse(f).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn departures_are_announced_except_during_shutdown() {
        let app = App::new(AppConfig::new("1", "k", "s"), Arc::new(Metrics::default()));
        let (_a, mut arx) = join(&app, 1, "a").await;
        let (_b, _brx) = join(&app, 2, "b").await;
        let (_c, _crx) = join(&app, 3, "c").await;
        drain(&mut arx);
        assert!(app.unsubscribe(2, "presence-x"));
        assert_eq!(
            drain(&mut arx),
            vec![ServerFrame::MemberRemoved {
                channel: "presence-x".into(),
                user_id: "b".into()
            }]
        );
        app.begin_shutdown();
        assert!(app.unsubscribe(3, "presence-x"));
        assert_eq!(
            drain(&mut arx),
            vec![],
            "no departures announced while shutting down"
        );
        assert_eq!(app.users("presence-x").unwrap(), vec!["a".to_owned()]);
    }
}
