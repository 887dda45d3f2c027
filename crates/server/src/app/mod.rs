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
//! * `check` — what a subscription or client event must satisfy first;
//! * `channels` — the channel table and delivery to local subscribers;
//! * `signins` — users signed in with `pusher:signin`;
//! * `quota` — the per-app connection quota;
//! * `announce` — the one place presence changes become frames;
//! * `watchlist` — who watches whom, told when users come online or go;
//! * `counts` — subscription counts, coalesced per channel;
//! * `cache` — the last event of each cache channel.
//!
//! Presence is decided in one place, the protocol's model
//! ([`whosin_protocol::Presence`]), for local connections and, in a
//! cluster, for the other nodes alike (each is one more holder); what it
//! decides is announced in one place, `announce`. What other nodes
//! share comes through the [`Backplane`].

pub(crate) mod announce;
pub(crate) mod cache;
pub(crate) mod channels;
pub(crate) mod check;
pub(crate) mod counts;
pub mod history;
pub(crate) mod quota;
pub(crate) mod signins;
pub(crate) mod watchlist;

pub use check::{ClientEventError, SubscribeError};
pub use watchlist::MAX_WATCHLIST;

use crate::backplane::{Backplane, Hold, Inbound, Published};
use crate::config::AppConfig;
use crate::metrics::{Gauges, Metrics};
use crate::outbox::{Frame, Outbox};
use crate::webhooks::{Hooks, Signal};
use announce::announce;
use cache::LastEvents;
use channels::{Channel, ChannelTable, Holder, Subscriber};
use history::History;
use quota::ConnectionQuota;
use signins::SignIns;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::mpsc;
use watchlist::{Watchers, ONLINE};
use whosin_protocol::frame::{server, Data};
use whosin_protocol::{is_cache_channel, server_to_user};
use whosin_protocol::{Change, ChannelKind, CloseCode, SubscribeData};

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
    watchers: Watchers,
    cache: LastEvents,
    /// Channels whose subscription count changed since the counts task
    /// last looked (see [`counts`]).
    counts_marked: HashSet<String>,
    history: History,
}

/// Whether `name` is tracked by the presence model: presence channels,
/// and the hidden set of signed-in users ([`ONLINE`]).
fn tracks_presence(name: &str) -> bool {
    name == ONLINE || ChannelKind::of(name) == ChannelKind::Presence
}

/// Whether subscribers of `name` are told its subscription count: public
/// and private channels (presence channels have their member count).
fn counts_subscriptions(name: &str) -> bool {
    ChannelKind::of(name) != ChannelKind::Presence && server_to_user(name).is_none()
}

/// Whether a frame is an application event (not `pusher:` or
/// `pusher_internal:`), which is what a cache channel replays.
fn is_app_event(frame: &Frame) -> bool {
    !frame.starts_with(r#"{"event":"pusher"#)
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
    /// What this node shares with the others of its cluster ([`crate::backplane::Local`]
    /// on a single node).
    backplane: Arc<dyn Backplane>,
    /// Wakes the subscription counts task ([`counts`]).
    counts_wake: tokio::sync::Notify,
    /// Wakes the task that saves count history to the cluster.
    history_wake: tokio::sync::Notify,
    /// Where webhook signals go, once [`App::spawn_tasks`] started the
    /// app's webhook task (apps without receivers have none).
    hooks: std::sync::OnceLock<Hooks>,
    /// Other nodes shutting down (see [`App::remote_leaving`]).
    departing: Mutex<HashSet<Arc<str>>>,
}

impl App {
    /// A new app with no connections.
    pub fn new(config: AppConfig, metrics: Arc<Metrics>, backplane: Arc<dyn Backplane>) -> App {
        App {
            quota: ConnectionQuota::new(config.max_connections),
            config,
            state: Mutex::new(State::default()),
            metrics,
            shutting_down: AtomicBool::new(false),
            backplane,
            counts_wake: tokio::sync::Notify::new(),
            history_wake: tokio::sync::Notify::new(),
            hooks: std::sync::OnceLock::new(),
            departing: Mutex::new(HashSet::new()),
        }
    }

    /// Starts the app's background work: subscription counts and webhooks,
    /// when the app has them. `webhook_grace` is how long removals wait.
    ///
    /// `clustered`: the count history is also saved to the cluster.
    pub fn spawn_tasks(
        self: &Arc<Self>,
        shutdown: tokio::sync::watch::Receiver<bool>,
        webhook_grace: std::time::Duration,
        clustered: bool,
    ) {
        if self.config.subscription_count {
            tokio::spawn(counts::run(self.clone(), shutdown.clone()));
        }
        if clustered {
            tokio::spawn(save_history(Arc::downgrade(self), shutdown.clone()));
        }
        let c = &self.config;
        if let Some((hooks, task)) = crate::webhooks::start(
            &c.id,
            &c.key,
            &c.secret,
            &c.webhooks,
            webhook_grace,
            self.metrics.clone(),
        ) {
            if self.hooks.set(hooks).is_ok() {
                tokio::spawn(task.run(Arc::downgrade(self), shutdown));
            }
        }
    }

    /// Tells the webhook task what happened (nothing without receivers, or
    /// while the server shuts down: its clients are about to reconnect).
    fn hook(&self, make: impl FnOnce() -> Signal) {
        if let Some(h) = self.hooks.get() {
            if !self.quiet() {
                h.signal(make());
            }
        }
    }

    /// Records a presence channel's member count in its history (and wakes
    /// the saver when this is the first unsaved change).
    fn count_changed(&self, history: &mut History, name: &str, count: usize) {
        history.record(name, count, history::this_minute());
        self.history_wake.notify_one();
    }

    /// The last 24 hours of a presence channel's member count, one point
    /// per minute with a change (in a cluster: completed from Redis).
    pub async fn history(&self, channel: &str) -> Vec<history::Point> {
        let now = history::this_minute();
        let mine = self.state().history.points(channel, now);
        match self.backplane.history_load(&self.config.id, channel).await {
            Some(stored) => history::merge(mine, stored, now),
            None => mine,
        }
    }

    /// For each of `channels`, whether another node has subscribers (one
    /// query for all; `false` when nothing is shared or Redis cannot be
    /// asked).
    pub(crate) async fn occupied_elsewhere(&self, channels: &[String]) -> Vec<bool> {
        match self
            .backplane
            .remote_occupancy(&self.config.id, channels)
            .await
        {
            Some(v) => channels
                .iter()
                .enumerate()
                .map(|(i, _)| v.get(i).is_some_and(|n| *n > 0))
                .collect(),
            None => vec![false; channels.len()],
        }
    }

    /// For each of `channels`, whether any node has subscribers.
    pub(crate) async fn occupied_anywhere(&self, channels: &[String]) -> Vec<bool> {
        let here = self.local_subscriptions(channels);
        let elsewhere = self.occupied_elsewhere(channels).await;
        here.iter()
            .zip(elsewhere)
            .map(|(n, e)| *n > 0 || e)
            .collect()
    }

    /// Marks a channel's subscription count as changed.
    fn mark_count(&self, state: &mut State, name: &str) {
        if self.config.subscription_count && counts_subscriptions(name) {
            if state.counts_marked.is_empty() {
                self.counts_wake.notify_one();
            }
            state.counts_marked.insert(name.to_owned());
        }
    }

    /// The channels marked since the last call.
    fn take_marked_counts(&self) -> Vec<String> {
        self.state().counts_marked.drain().collect()
    }

    /// This node's subscriptions to each of `channels`.
    fn local_subscriptions(&self, channels: &[String]) -> Vec<usize> {
        let state = self.state();
        channels
            .iter()
            .map(|c| {
                state
                    .table
                    .channels
                    .get(c)
                    .map_or(0, |c| c.subscribers.len())
            })
            .collect()
    }

    /// Sends each channel's count to its subscribers on every node.
    fn publish_counts(&self, counts: &[(String, usize)]) {
        for (name, n) in counts {
            self.hook(|| {
                Signal::Now(serde_json::json!({
                    "name": "subscription_count",
                    "channel": name,
                    "subscription_count": n,
                }))
            });
            let frame = Frame::from(server::subscription_count(name, *n));
            if self.backplane.publish(&self.config.id, name, &frame, None) == Published::NotShared {
                self.deliver(name, &frame, None);
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug in this module; the
        // state is still consistent enough to keep serving other clients.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn quiet(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Delivers a frame to this node's subscribers of a channel (a frame
    /// that came over the cluster bus, or an event on one node).
    ///
    /// A cache channel's event is remembered for later subscribers (on
    /// every node: this is also the path of events from the cluster bus);
    /// a `#server-to-user-` event goes to every connection signed in as
    /// that user.
    pub fn deliver(&self, channel_name: &str, frame: &Frame, except_socket: Option<&str>) {
        if self.quiet() {
            return;
        }
        let mut guard = self.state();
        let state = &mut *guard;
        if is_cache_channel(channel_name) && is_app_event(frame) {
            state.cache.record(channel_name, frame);
        }
        if let Some(user) = server_to_user(channel_name) {
            for o in state.signins.of(user) {
                if Some(&*o.socket_id) != except_socket {
                    o.send(frame.clone());
                }
            }
            return;
        }
        let Some(channel) = state.table.channels.get_mut(channel_name) else {
            return;
        };
        channel.send_unless(frame, |_, o| Some(&*o.socket_id) == except_socket);
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
    /// for the connection's own bookkeeping. Never waits: in a cluster the
    /// roster is this node's mirror of every node.
    ///
    /// `address` is the client address the connection counts against for
    /// the presence-user limit per address (`None` when it is exempt).
    pub fn subscribe(
        &self,
        outbox: &Outbox,
        sub: &SubscribeData,
        address: Option<IpAddr>,
    ) -> Result<Option<Arc<str>>, SubscribeError> {
        let admitted = check::subscription(&self.config, &self.metrics, &outbox.socket_id, sub)?;
        let mut guard = self.state();
        let state = &mut *guard;
        let table = &mut state.table;
        let channel = table
            .channels
            .entry(sub.channel.clone())
            .or_insert_with(|| Channel::new(admitted.kind));
        // An observer (a signed `"observer": true`) gets the roster and the
        // changes but holds no user: it is never a member.
        let member = admitted.presence.as_ref().filter(|p| !p.observer);
        let user_id: Option<Arc<str>> = member.map(|p| Arc::from(p.user_id.as_str()));

        if let Some(existing) = channel.subscribers.get(&outbox.id) {
            // A repeated subscribe changes nothing; confirm it again (the
            // roster frame is built once per change, so this is a clone).
            if existing.user_id != user_id {
                return Err(SubscribeError::new(
                    400,
                    "already subscribed to this channel as another user; unsubscribe first",
                ));
            }
            outbox.send(channel.succeeded(&sub.channel));
            return Ok(user_id);
        }

        let mut added = None;
        let mut counted_address = None;
        if let (Some(p), Some(pd)) = (channel.presence.as_mut(), member) {
            if let Some(a) = address {
                let per_address = self.config.max_presence_users_per_ip;
                if per_address > 0 && !p.address_may_hold(a, &pd.user_id, per_address) {
                    table.forget_if_empty(&sub.channel);
                    return Err(SubscribeError::per_address(&sub.channel, per_address));
                }
            }
            let max = self.config.max_presence_members;
            let was_held = p.held_here(&pd.user_id);
            match p.members.join(
                &pd.user_id,
                pd.user_info.clone(),
                Holder::Conn(outbox.id),
                max,
            ) {
                Ok(change) => added = change,
                Err(full) => {
                    table.forget_if_empty(&sub.channel);
                    return Err(SubscribeError::full(&sub.channel, full.max));
                }
            }
            if let (Some(a), Some(user)) = (address, user_id.as_ref()) {
                p.address_holds(a, user);
                counted_address = Some(a);
            }
            if !was_held {
                self.backplane.presence(
                    &self.config.id,
                    &sub.channel,
                    &pd.user_id,
                    Some(&pd.user_info),
                );
            }
        }
        if channel.subscribers.is_empty() && server_to_user(&sub.channel).is_none() {
            self.hook(|| Signal::Occupied(sub.channel.clone()));
        }
        channel.subscribers.insert(
            outbox.id,
            Subscriber {
                outbox: outbox.clone(),
                user_id: user_id.clone(),
                address: counted_address,
            },
        );
        if let Some(change) = &added {
            announce(&sub.channel, channel, change, Some(outbox.id));
            let n = channel.presence.as_ref().map_or(0, |p| p.members.len());
            self.count_changed(&mut state.history, &sub.channel, n);
            self.hook(|| Signal::Added {
                channel: sub.channel.clone(),
                user: change.user_id().to_owned(),
            });
        }
        outbox.send(channel.succeeded(&sub.channel));
        if is_cache_channel(&sub.channel) {
            let last = state.cache.last(&sub.channel).unwrap_or_else(|| {
                self.hook(|| {
                    Signal::Now(serde_json::json!({"name": "cache_miss", "channel": sub.channel}))
                });
                Frame::from(server::cache_miss(&sub.channel))
            });
            outbox.send(last);
        }
        self.backplane.occupancy(&self.config.id, &sub.channel, 1);
        self.mark_count(state, &sub.channel);
        Ok(user_id)
    }

    /// Whether `user` is present in `channel` (in a cluster: anywhere, as
    /// this node's mirror knows it). The auth endpoint asks before it
    /// signs a bare visitor id, so that an id seen in the roster cannot be
    /// used to appear as someone who is here.
    pub fn is_present(&self, channel: &str, user: &str) -> bool {
        self.present_in(Some(channel), user)
    }

    /// Whether `user` is present in any presence channel of the app (a
    /// visitor id is the app's, not one channel's: the auth endpoint gives
    /// its token only for an id nobody holds anywhere).
    pub fn is_present_anywhere(&self, user: &str) -> bool {
        self.present_in(None, user)
    }

    fn present_in(&self, channel: Option<&str>, user: &str) -> bool {
        let state = self.state();
        let mut channels = state.table.channels.iter().filter(|(name, _)| {
            name.as_str() != ONLINE && channel.is_none_or(|c| c == name.as_str())
        });
        channels.any(|(_, c)| {
            c.presence
                .as_ref()
                .is_some_and(|p| p.members.contains(user))
        })
    }

    /// Removes a connection from a channel, announcing `member_removed` when
    /// it held the user's last connection (in a cluster: the last anywhere,
    /// as this node's mirror knows it), and dropping the channel when it is
    /// left empty. Returns whether the connection was subscribed.
    pub fn unsubscribe(&self, conn: u64, channel_name: &str) -> bool {
        let mut guard = self.state();
        let state = &mut *guard;
        let table = &mut state.table;
        let Some(channel) = table.channels.get_mut(channel_name) else {
            return false;
        };
        let Some(sub) = channel.subscribers.remove(&conn) else {
            return false;
        };
        if let (Some(p), Some(user)) = (channel.presence.as_mut(), sub.user_id.as_deref()) {
            if let Some(a) = sub.address {
                p.address_releases(a, user);
            }
            let removed = p.members.leave(user, &Holder::Conn(conn));
            if !p.held_here(user) {
                self.backplane
                    .presence(&self.config.id, channel_name, user, None);
            }
            if let Some(change) = removed {
                self.announce_or_record(
                    channel_name,
                    channel,
                    &change,
                    &state.watchers,
                    &mut state.history,
                );
                self.hook(|| Signal::Removed {
                    channel: channel_name.to_owned(),
                    user: change.user_id().to_owned(),
                });
            }
        }
        if channel.subscribers.is_empty() && server_to_user(channel_name).is_none() {
            self.hook(|| Signal::Vacated(channel_name.to_owned()));
        }
        self.backplane.occupancy(&self.config.id, channel_name, -1);
        table.forget_if_empty(channel_name);
        self.mark_count(state, channel_name);
        true
    }

    /// Announces a change to local subscribers, or only records it while the
    /// server shuts down. A change of the signed-in set ([`ONLINE`]) is told
    /// to the users' watchers instead.
    fn announce_or_record(
        &self,
        name: &str,
        channel: &mut Channel,
        change: &Change,
        watchers: &Watchers,
        history: &mut History,
    ) {
        if name == ONLINE {
            if !self.quiet() {
                watchers.notify(change);
            }
            return;
        }
        if !self.quiet() {
            let n = channel.presence.as_ref().map_or(0, |p| p.members.len());
            self.count_changed(history, name, n);
        }
        if self.quiet() {
            if let Some(p) = channel.presence.as_mut() {
                p.record(change);
            }
        } else {
            announce(name, channel, change, None);
        }
    }

    /// Another node now holds `user` in `channel` (`info: Some`), or no
    /// longer does.
    pub fn remote_presence(
        &self,
        node: &Arc<str>,
        channel_name: &str,
        user: &str,
        info: Option<Arc<str>>,
    ) {
        if !tracks_presence(channel_name) {
            return;
        }
        let mut guard = self.state();
        let state = &mut *guard;
        let table = &mut state.table;
        let channel = table
            .channels
            .entry(channel_name.to_owned())
            .or_insert_with(Channel::presence);
        let Some(p) = channel.presence.as_mut() else {
            return;
        };
        let holder = Holder::Node(node.clone());
        let change = match info {
            Some(info) => p
                .members
                .join(user, info, holder, usize::MAX)
                .ok()
                .flatten(),
            None => p.members.leave(user, &holder),
        };
        if let Some(change) = change {
            self.announce_or_record(
                channel_name,
                channel,
                &change,
                &state.watchers,
                &mut state.history,
            );
            // A shutting-down node's departures: the leader reports them.
            if matches!(change, Change::Removed { .. })
                && channel_name != ONLINE
                && self.backplane.is_leader()
                && self
                    .departing
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains(node)
            {
                self.hook(|| Signal::Removed {
                    channel: channel_name.to_owned(),
                    user: change.user_id().to_owned(),
                });
                self.hook(|| Signal::Vacated(channel_name.to_owned()));
            }
        }
        table.forget_if_empty(channel_name);
    }

    /// Everything another node holds, replacing what was known of it.
    pub fn remote_snapshot(&self, node: &Arc<str>, holds: Vec<Hold>) {
        self.replace_remote(node, holds, false);
    }

    /// Replaces what is known of `node` with `holds`. `node_died`: the
    /// removals are the cluster's news (nobody else will send their
    /// webhooks), told by the leader; otherwise they are corrections of
    /// this mirror, whose webhooks the node that caused them has sent.
    fn replace_remote(&self, node: &Arc<str>, holds: Vec<Hold>, node_died: bool) {
        let speaks = node_died && self.backplane.is_leader();
        if node_died {
            // Its subscribers are gone from every total: recount.
            let mut guard = self.state();
            let state = &mut *guard;
            let names: Vec<String> = state
                .table
                .channels
                .iter()
                .filter(|(_, c)| !c.subscribers.is_empty())
                .map(|(n, _)| n.clone())
                .collect();
            for n in names {
                self.mark_count(state, &n);
            }
        }
        let mut wanted: HashMap<String, HashMap<String, Arc<str>>> = HashMap::new();
        for (channel, user, info) in holds {
            if tracks_presence(&channel) {
                wanted.entry(channel).or_default().insert(user, info);
            }
        }
        let holder = Holder::Node(node.clone());
        let mut guard = self.state();
        let state = &mut *guard;
        let table = &mut state.table;
        // Departures first, then arrivals, channel by channel.
        for (name, channel) in table.channels.iter_mut() {
            let Some(p) = channel.presence.as_mut() else {
                continue;
            };
            let keep = wanted.get(name);
            let gone: Vec<Arc<str>> = p
                .members
                .iter()
                .map(|(u, _)| u.clone())
                .filter(|u| {
                    p.members.holds(u, &holder) && !keep.is_some_and(|k| k.contains_key(&**u))
                })
                .collect();
            let changes: Vec<Change> = gone
                .iter()
                .filter_map(|u| p.members.leave(u, &holder))
                .collect();
            for change in changes {
                self.announce_or_record(
                    name,
                    channel,
                    &change,
                    &state.watchers,
                    &mut state.history,
                );
                if speaks && name != ONLINE {
                    self.hook(|| Signal::Removed {
                        channel: name.clone(),
                        user: change.user_id().to_owned(),
                    });
                    // Its subscribers went too: vacated, if nobody is left
                    // anywhere when the grace period ends.
                    self.hook(|| Signal::Vacated(name.clone()));
                }
            }
        }
        for (name, users) in wanted {
            let channel = table
                .channels
                .entry(name.clone())
                .or_insert_with(Channel::presence);
            for (user, info) in users {
                let Some(p) = channel.presence.as_mut() else {
                    break;
                };
                if let Ok(Some(change)) = p.members.join(&user, info, holder.clone(), usize::MAX) {
                    self.announce_or_record(
                        &name,
                        channel,
                        &change,
                        &state.watchers,
                        &mut state.history,
                    );
                }
            }
        }
        table.forget_all_empty();
    }

    /// Another node is shutting down: the departures it announces next are
    /// reported here when this node leads (the node itself says nothing).
    pub fn remote_leaving(&self, node: &Arc<str>) {
        self.departing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node.clone());
    }

    /// Another node is gone: it holds nobody any more (a snapshot of nothing).
    pub fn remote_gone(&self, node: &Arc<str>) {
        self.replace_remote(node, Vec::new(), true);
        self.departing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(node);
    }

    /// Hands the backplane everything this node holds, to replace what the
    /// cluster knows of it (after a reply that never came, or Redis lost it).
    pub fn republish(&self) {
        let state = self.state();
        let mut holds = Vec::new();
        let mut occupancy = Vec::new();
        for (name, channel) in &state.table.channels {
            if !channel.subscribers.is_empty() {
                occupancy.push((name.clone(), channel.subscribers.len()));
            }
            let Some(p) = channel.presence.as_ref() else {
                continue;
            };
            for (user, info) in p.members.iter() {
                if p.held_here(user) {
                    holds.push((name.clone(), user.to_string(), info.clone()));
                }
            }
        }
        self.backplane.republish(&self.config.id, holds, occupancy);
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
        check::client_event(&self.config, event, channel_name, data)?;
        let mut guard = self.state();
        let state = &mut *guard;
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
        self.hook(|| {
            let mut e = serde_json::json!({
                "name": "client_event",
                "channel": channel_name,
                "event": event,
                "data": data,
                "socket_id": &*outbox.socket_id,
            });
            if let Some(u) = sub.user_id.as_deref() {
                e["user_id"] = serde_json::json!(u);
            }
            Signal::Now(e)
        });
        let shared = self.backplane.publish(
            &self.config.id,
            channel_name,
            &frame,
            Some(&outbox.socket_id),
        );
        if shared == Published::NotShared {
            channel.send_all(&frame, Some(outbox.id));
            // As the delivery path does for events from the bus: a cache
            // channel's client event is its last event too.
            if is_cache_channel(channel_name) {
                state.cache.record(channel_name, &frame);
            }
        }
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
            if self
                .backplane
                .publish(&self.config.id, name, &frame, except_socket)
                == Published::NotShared
            {
                self.deliver(name, &frame, except_socket);
            }
        }
    }

    /// Occupied channels whose names start with `prefix`, sorted by name,
    /// with their facts: cluster-wide when clustered (this node's view when
    /// the cluster cannot be asked).
    pub async fn channels(&self, prefix: &str) -> Vec<(String, ChannelInfo)> {
        match self.backplane.occupancy_all(&self.config.id).await {
            Some(occ) => {
                let state = self.state();
                occ.into_iter()
                    .filter(|(n, _)| n.starts_with(prefix))
                    .map(|(name, subs)| {
                        let info = ChannelInfo {
                            subscription_count: subs,
                            user_count: user_count(&state.table, &name),
                        };
                        (name, info)
                    })
                    .collect()
            }
            None => {
                let state = self.state();
                let mut list: Vec<_> = state
                    .table
                    .channels
                    .iter()
                    .filter(|(n, c)| n.starts_with(prefix) && !c.subscribers.is_empty())
                    .map(|(n, c)| (n.clone(), info_of(c)))
                    .collect();
                list.sort_by(|a, b| a.0.cmp(&b.0));
                list
            }
        }
    }

    /// One channel's facts, `None` when it is not occupied; cluster-wide
    /// when clustered.
    pub async fn channel_info(&self, name: &str) -> Option<ChannelInfo> {
        match self.backplane.occupancy_all(&self.config.id).await {
            Some(occ) => {
                let subs = *occ.get(name)?;
                Some(ChannelInfo {
                    subscription_count: subs,
                    user_count: user_count(&self.state().table, name),
                })
            }
            None => self
                .state()
                .table
                .channels
                .get(name)
                .filter(|c| !c.subscribers.is_empty())
                .map(info_of),
        }
    }

    /// User ids present in a presence channel (every node's, in a cluster),
    /// sorted; `None` when nobody is.
    pub fn users(&self, name: &str) -> Option<Vec<String>> {
        let state = self.state();
        let p = state.table.channels.get(name)?.presence.as_ref()?;
        if p.members.is_empty() {
            return None;
        }
        let mut ids: Vec<String> = p.members.iter().map(|(id, _)| id.to_string()).collect();
        ids.sort();
        Some(ids)
    }

    /// Closes (4009) every connection of a user, whether signed in or
    /// present in any presence channel, on every node. Returns how many of
    /// this node's were asked to close (0 when the cluster does it).
    pub fn terminate_user(&self, user_id: &str) -> usize {
        match self.backplane.terminate(&self.config.id, user_id) {
            // Every node (this one included) closes its own connections.
            Published::Shared => 0,
            Published::NotShared => self.terminate_local(user_id),
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
            for holder in p.members.holders(user_id) {
                if let Holder::Conn(conn) = holder {
                    if let Some(sub) = channel.subscribers.get(conn) {
                        ids.push(&sub.outbox);
                    }
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

    /// Records a signed-in user for a connection: it holds its user in
    /// the signed-in set ([`ONLINE`]), so watchers of the user learn it is
    /// online when this is its first connection anywhere, and it watches
    /// `watchlist` (told at once which of them are online).
    pub fn sign_in(&self, outbox: &Outbox, user_id: &str, watchlist: &[String]) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.signins.add(outbox, user_id);
        let online = state
            .table
            .channels
            .entry(ONLINE.to_owned())
            .or_insert_with(Channel::presence);
        let Some(p) = online.presence.as_mut() else {
            return;
        };
        let was_held = p.held_here(user_id);
        if let Ok(Some(change)) = p.members.join(
            user_id,
            Arc::from("null"),
            Holder::Conn(outbox.id),
            usize::MAX,
        ) {
            state.watchers.notify(&change);
        }
        if !was_held {
            self.backplane
                .presence(&self.config.id, ONLINE, user_id, Some("null"));
        }
        state.watchers.watch(outbox, watchlist);
        tell_online(outbox, watchlist, &p.members);
    }

    /// A signed-in connection's new watchlist (a second sign-in as the same
    /// user), told at once which of them are online.
    pub fn rewatch(&self, outbox: &Outbox, watchlist: &[String]) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.watchers.watch(outbox, watchlist);
        let Some(p) = state
            .table
            .channels
            .get(ONLINE)
            .and_then(|c| c.presence.as_ref())
        else {
            return;
        };
        tell_online(outbox, watchlist, &p.members);
    }

    /// Forgets a connection's sign-in: watchers of the user learn it is
    /// offline when this was its last connection anywhere.
    pub fn sign_out(&self, conn: u64, user_id: &str) {
        let mut guard = self.state();
        let state = &mut *guard;
        state.signins.remove(conn, user_id);
        state.watchers.forget(conn);
        let Some(online) = state.table.channels.get_mut(ONLINE) else {
            return;
        };
        let Some(p) = online.presence.as_mut() else {
            return;
        };
        let change = p.members.leave(user_id, &Holder::Conn(conn));
        if !p.held_here(user_id) {
            self.backplane
                .presence(&self.config.id, ONLINE, user_id, None);
        }
        if let Some(change) = change {
            self.announce_or_record(ONLINE, online, &change, &state.watchers, &mut state.history);
        }
        state.table.forget_if_empty(ONLINE);
    }

    /// Gauges of this app for `/metrics`: members as this node sees them
    /// (every node's, in a cluster).
    pub fn gauges(&self) -> Gauges {
        let state = self.state();
        Gauges {
            connections: self.connection_count() as u64,
            channels: state
                .table
                .channels
                .values()
                .filter(|c| !c.subscribers.is_empty())
                .count() as u64,
            presence_members: state
                .table
                .channels
                .iter()
                .filter(|(name, _)| *name != ONLINE)
                .filter_map(|(_, c)| c.presence.as_ref())
                .map(|p| p.members.len() as u64)
                .sum(),
        }
    }
}

/// Saves the count history's newest minutes to the cluster: woken by the
/// first change, it waits a little so that a busy channel is one write,
/// and only the leader writes (every node's mirror has the same counts).
async fn save_history(app: std::sync::Weak<App>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    const GATHER: std::time::Duration = std::time::Duration::from_secs(2);
    loop {
        let Some(a) = app.upgrade() else { return };
        tokio::select! {
            _ = a.history_wake.notified() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        drop(a);
        tokio::select! {
            _ = tokio::time::sleep(GATHER) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let Some(a) = app.upgrade() else { return };
        let unsaved = a.state().history.take_unsaved();
        if a.backplane.is_leader() && !unsaved.is_empty() {
            a.backplane.history_save(&a.config.id, unsaved).await;
        }
    }
}

/// Routes inbound messages to the apps until every sender is gone.
pub async fn dispatch(apps: Vec<Arc<App>>, mut inbound: mpsc::Receiver<Inbound>) {
    let by_id: HashMap<String, Arc<App>> = apps
        .iter()
        .map(|a| (a.config.id.clone(), a.clone()))
        .collect();
    while let Some(msg) = inbound.recv().await {
        match msg {
            Inbound::Deliver {
                app,
                channel,
                frame,
                except,
            } => {
                if let Some(a) = by_id.get(&app) {
                    a.deliver(&channel, &frame, except.as_deref());
                }
            }
            Inbound::Presence {
                app,
                node,
                channel,
                user,
                info,
            } => {
                if let Some(a) = by_id.get(&app) {
                    a.remote_presence(&node, &channel, &user, info);
                }
            }
            Inbound::Snapshot { app, node, holds } => {
                if let Some(a) = by_id.get(&app) {
                    a.remote_snapshot(&node, holds);
                }
            }
            Inbound::Gone { node } => {
                for a in &apps {
                    a.remote_gone(&node);
                }
            }
            Inbound::Leaving { node } => {
                for a in &apps {
                    a.remote_leaving(&node);
                }
            }
            Inbound::Republish { app } => {
                if let Some(a) = by_id.get(&app) {
                    a.republish();
                }
            }
            Inbound::Terminate { app, user } => {
                if let Some(a) = by_id.get(&app) {
                    a.terminate_local(&user);
                }
            }
        }
    }
}

fn user_count(table: &ChannelTable, name: &str) -> Option<usize> {
    if ChannelKind::of(name) != ChannelKind::Presence {
        return None;
    }
    Some(
        table
            .channels
            .get(name)
            .and_then(|c| c.presence.as_ref())
            .map_or(0, |p| p.members.len()),
    )
}

fn info_of(c: &Channel) -> ChannelInfo {
    ChannelInfo {
        subscription_count: c.subscribers.len(),
        user_count: c.presence.as_ref().map(|p| p.members.len()),
    }
}

/// Tells a signed-in connection which of its watchlist are online now
/// (on sign-in and on a new watchlist).
fn tell_online(outbox: &Outbox, watchlist: &[String], online: &whosin_protocol::Presence<Holder>) {
    let here: Vec<&str> = watchlist
        .iter()
        .map(String::as_str)
        .filter(|u| online.contains(u))
        .collect();
    if !here.is_empty() {
        outbox.send(Frame::from(server::watchlist_events(true, &here)));
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
        app.subscribe(&outbox, &sub, None).unwrap();
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
        let app = App::new(
            AppConfig::new("1", "k", "s"),
            Arc::new(Metrics::default()),
            Arc::new(crate::backplane::Local),
        );
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
