//! One app's live state: its channels, their subscribers and presence
//! members. This is the server's "db" (in mini-redis terms).
//!
//! All state sits behind one synchronous mutex that is never held across an
//! `.await`: every operation takes the lock, changes state, queues the
//! resulting frames on the affected outboxes (which never waits), and lets go.
//! Queuing under the lock is what gives every subscriber the same order of
//! events on a channel — a joiner's `subscription_succeeded` is always before
//! any `member_*` that follows it.
//!
//! The parts, one concern each:
//! * [`check`] — what a subscription or client event must satisfy first;
//! * [`channels`] — the channel table and delivery to local subscribers;
//! * [`signins`] — users signed in with `pusher:signin`;
//! * [`quota`] — the per-app connection quota.
//!
//! Presence is decided by the protocol's model
//! ([`whosin_protocol::Presence`]) and announced by [`crate::announce`].

pub(crate) mod channels;
pub(crate) mod check;
pub(crate) mod quota;
pub(crate) mod signins;

pub use check::{ClientEventError, SubscribeError};

use crate::announce::{announce, frame_for};
use crate::cluster::{Cluster, JoinResult};
use crate::config::AppConfig;
use crate::metrics::{Gauges, Metrics};
use crate::outbox::{Frame, Outbox};
use channels::{Channel, ChannelTable, Subscriber};
use quota::ConnectionQuota;
use signins::SignIns;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use whosin_protocol::frame::{server, Data};
use whosin_protocol::roster::subscription_succeeded_for;
use whosin_protocol::{Change, ChannelKind, CloseCode, PresenceData, SubscribeData};

/// What is known about one occupied channel, for the REST API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelInfo {
    /// Connections subscribed.
    pub subscription_count: usize,
    /// Distinct users, for presence channels.
    pub user_count: Option<usize>,
}

/// Everything behind the app's one lock.
#[derive(Debug, Default)]
struct State {
    table: ChannelTable,
    signins: SignIns,
}

/// A served app.
#[derive(Debug)]
pub struct App {
    /// Its configuration.
    pub config: AppConfig,
    state: Mutex<State>,
    quota: ConnectionQuota,
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
            quota: ConnectionQuota::new(config.max_connections),
            config,
            state: Mutex::new(State::default()),
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

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to keep serving other clients.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends `frame` to the channel's subscribers: through the cluster bus
    /// when clustered (every node delivers), else directly. `except` is the
    /// connection (and its socket id) to leave out.
    fn publish(
        &self,
        channel: &mut Channel,
        name: &str,
        frame: Frame,
        except: Option<(u64, &str)>,
    ) {
        match self.cluster() {
            Some(c) => c.publish(&self.config.id, name, &frame, except.map(|e| e.1)),
            None => channel.send_all(&frame, except.map(|e| e.0)),
        }
    }

    /// Delivers a frame to this node's subscribers of a channel (a frame
    /// that came over the cluster bus, or a REST event on one node).
    pub fn deliver(&self, channel_name: &str, frame: &Frame, except_socket: Option<&str>) {
        if self.shutting_down.load(Ordering::Acquire) {
            return;
        }
        let mut state = self.state();
        let Some(channel) = state.table.channels.get_mut(channel_name) else {
            return;
        };
        channel.send_unless(frame, |_, o| Some(&*o.socket_id) == except_socket);
    }

    /// Sends a fresh `subscription_succeeded` frame (the cluster-wide
    /// roster) to every local subscriber of a presence channel (after a
    /// cluster resync).
    pub fn resend_roster(&self, channel_name: &str, frame: Frame) {
        let mut state = self.state();
        if let Some(channel) = state.table.channels.get_mut(channel_name) {
            channel.send_all(&frame, None);
        }
    }

    /// channel → user → info of the presence this node holds (for a resync).
    pub fn local_presence(&self) -> crate::cluster::LocalPresence {
        let state = self.state();
        state
            .table
            .channels
            .iter()
            .filter_map(|(name, c)| {
                let p = c.presence.as_ref()?;
                Some((
                    name.clone(),
                    p.members
                        .iter()
                        .map(|(u, info)| (u.to_string(), info.clone()))
                        .collect(),
                ))
            })
            .collect()
    }

    /// Local subscriptions per channel (for a resync).
    pub fn local_occupancy(&self) -> Vec<(String, usize)> {
        self.state()
            .table
            .channels
            .iter()
            .map(|(n, c)| (n.clone(), c.subscribers.len()))
            .collect()
    }

    /// Stops announcing departures: the server is closing every connection.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Takes a connection slot, or `false` when the quota is used up.
    pub fn try_open_connection(&self) -> bool {
        self.quota.try_take()
    }

    /// Gives a connection slot back.
    pub fn close_connection(&self) {
        self.quota.give_back();
    }

    /// Open connections.
    pub fn connection_count(&self) -> usize {
        self.quota.open()
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
        let admitted = check::subscription(&self.config, &self.metrics, &outbox.socket_id, sub)?;
        match (self.cluster().cloned(), admitted.presence) {
            (Some(cluster), Some(pd)) => self.subscribe_clustered(&cluster, outbox, sub, pd).await,
            (cluster, presence) => {
                let (user, new) = self.subscribe_local(outbox, sub, admitted.kind, presence)?;
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
        let table = &mut state.table;
        let channel = table
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
            outbox.send(channel.succeeded(&sub.channel));
            return Ok((user_id, false));
        }

        let mut added = None;
        if let (Some(p), Some(pd)) = (channel.presence.as_mut(), presence.as_ref()) {
            let max = self.config.max_presence_members;
            match p
                .members
                .join(&pd.user_id, pd.user_info.clone(), outbox.id, max)
            {
                Ok(change) => added = change,
                Err(full) => {
                    table.forget_if_empty(&sub.channel);
                    return Err(SubscribeError::full(&sub.channel, full.max));
                }
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
        if let Some(change) = &added {
            announce(&sub.channel, channel, change, Some(outbox.id));
        }
        outbox.send(channel.succeeded(&sub.channel));
        Ok((user_id, true))
    }

    /// Presence subscribe in a cluster: the local members (per-node dedupe)
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
        let max = self.config.max_presence_members;
        let reply = {
            let mut state = self.state();
            let table = &mut state.table;
            let channel = table
                .channels
                .entry(sub.channel.clone())
                .or_insert_with(|| Channel::new(ChannelKind::Presence));
            if channel.subscribers.contains_key(&outbox.id) {
                None
            } else {
                let p = channel.presence.get_or_insert_with(Default::default);
                // This node's members are a subset of the cluster's: a user
                // refused here would be refused there. Checked here too, so the
                // cap holds while Redis is away.
                match p
                    .members
                    .join(&pd.user_id, pd.user_info.clone(), outbox.id, max)
                {
                    Ok(Some(change)) => p.record(&change),
                    Ok(None) => {}
                    Err(full) => {
                        table.forget_if_empty(&sub.channel);
                        return Err(SubscribeError::full(&sub.channel, full.max));
                    }
                }
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
                    max,
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
        let table = &mut state.table;
        let Some(channel) = table.channels.get_mut(&sub.channel) else {
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
                if let Some(p) = channel.presence.as_mut() {
                    if let Some(change) = p.members.leave(&pd.user_id, &outbox.id) {
                        p.record(&change);
                    }
                }
                table.forget_if_empty(&sub.channel);
                return Err(SubscribeError::full(&sub.channel, max));
            }
            Some(JoinResult::Joined { members, .. }) => Frame::from(subscription_succeeded_for(
                &sub.channel,
                members.iter().map(|(u, i)| (u.as_str(), i.as_str())),
            )),
            None => {
                // Redis is unreachable: serve from what this node knows.
                let first = channel
                    .presence
                    .as_ref()
                    .map(|p| p.members.holders(&pd.user_id))
                    .is_some_and(|h| h.len() == 1);
                if first {
                    let change = Change::Added {
                        user_id: user.clone(),
                        info: pd.user_info.clone(),
                    };
                    channel.send_all(&frame_for(&sub.channel, &change), Some(outbox.id));
                }
                channel.succeeded(&sub.channel)
            }
        };
        outbox.send(snapshot);
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
            .table
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
        let table = &mut state.table;
        let Some(channel) = table.channels.get_mut(channel_name) else {
            return false;
        };
        let Some(sub) = channel.subscribers.remove(&conn) else {
            return false;
        };
        let removed = match (channel.presence.as_mut(), sub.user_id.as_deref()) {
            (Some(p), Some(user)) => p.members.leave(user, &conn),
            _ => None,
        };
        if let Some(change) = removed {
            match self.cluster() {
                // The cluster decides whether this was the last
                // connection anywhere, and announces it.
                Some(c) => {
                    if let Some(p) = channel.presence.as_mut() {
                        p.record(&change);
                    }
                    c.leave(&self.config.id, channel_name, change.user_id());
                }
                None if !self.shutting_down.load(Ordering::Acquire) => {
                    announce(channel_name, channel, &change, None);
                }
                None => {
                    if let Some(p) = channel.presence.as_mut() {
                        p.record(&change);
                    }
                }
            }
        }
        if let Some(c) = self.cluster() {
            c.occupancy(&self.config.id, channel_name, -1);
        }
        table.forget_if_empty(channel_name);
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
        check::client_event(&self.config, channel_name, data)?;
        let mut state = self.state();
        let Some(channel) = state.table.channels.get_mut(channel_name) else {
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
        self.publish(
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
        self.state().table.channels.get(name).map(info_of)
    }

    /// Occupied channels whose names start with `prefix`, sorted by name.
    pub fn channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        let mut list: Vec<_> = self
            .state()
            .table
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
        let p = state.table.channels.get(name)?.presence.as_ref()?;
        let mut ids: Vec<String> = p.members.iter().map(|(id, _)| id.to_string()).collect();
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
        for channel in state.table.channels.values() {
            let Some(p) = channel.presence.as_ref() else {
                continue;
            };
            for conn in p.members.holders(user_id) {
                if let Some(sub) = channel.subscribers.get(conn) {
                    ids.push(&sub.outbox);
                }
            }
        }
        ids.extend(state.signins.of(user_id));
        ids.sort_by_key(|o| o.id);
        ids.dedup_by_key(|o| o.id);
        for o in &ids {
            o.close(CloseCode::Unauthorized);
        }
        ids.len()
    }

    /// Records a signed-in user for a connection.
    pub fn sign_in(&self, outbox: &Outbox, user_id: &str) {
        self.state().signins.add(outbox, user_id);
    }

    /// Forgets a connection's sign-in.
    pub fn sign_out(&self, conn: u64, user_id: &str) {
        self.state().signins.remove(conn, user_id);
    }

    /// Gauges of this app for `/metrics`.
    pub fn gauges(&self) -> Gauges {
        let state = self.state();
        Gauges {
            connections: self.connection_count() as u64,
            channels: state.table.channels.len() as u64,
            presence_members: state
                .table
                .channels
                .values()
                .filter_map(|c| c.presence.as_ref())
                .map(|p| p.members.len() as u64)
                .sum(),
        }
    }
}

fn info_of(c: &Channel) -> ChannelInfo {
    ChannelInfo {
        subscription_count: c.subscribers.len(),
        user_count: c.presence.as_ref().map(|p| p.members.len()),
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
