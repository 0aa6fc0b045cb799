package push

// Concurrency in package push, written down in one place.
//
// # Lock order
//
// A lock on the left may be held while taking one on its right, never the
// other way round. Locks not named on a chain are leaves: nothing else is
// taken while holding them.
//
//	Hub.stripes[i] -> hubShard.mu -> hubChannel.mu -> Session.mu -> writer.mu
//	hubChannel.mu -> rateWheel.mu
//	rateWheel.firing -> hubChannel.mu
//	sessionSet.shards[i].mu -> Session.mu -> writer.mu
//
// Leaves: recovery.mu, nodeReports.mu, ipLimiter.mu, writer.mu, canary.mu,
// presenceBatch.mu, serverSubs.mu, rateWheel.mu, and a Frame's
// deflated.once (frame.go: its one deflate, run by the first compressing
// writer with no other lock held). subPresence.mu is taken with no other lock held and
// is held across the presence store call of its join or leave (waiting
// on presenceBatch), so that one connection's join and leave are never
// reordered; it is per subscription (and per session for the online
// set), so nobody else waits on it.
//
// What holds what, and why:
//
//   - Hub.stripes[i] (hub.go) serialises the broker Subscribe and
//     Unsubscribe of the channels hashed to it, so that a detach cannot
//     unsubscribe the broker after an attach subscribed it. It is the only
//     lock held across a broker call (Subscribe, Unsubscribe).
//   - hubShard.mu guards a shard's channel map. Hub.eachChannel holds it
//     (read) while its callback takes hubChannel.mu.
//   - hubChannel.mu guards the channel's subscriptions (subs, and each
//     subscription's idx, buffering, buf, skip, th) and its recovery state
//     (stream). The fan-out holds it while queueing frames to sessions
//     (Session.send takes Session.mu). It is never held across a broker
//     call: the memory engine delivers while holding its own channel
//     lock, so a broker call under hubChannel.mu can deadlock
//     (TestGapFillDoesNotDeadlockTheEngine).
//   - Session.mu guards the session's queue and state (session.go). It is
//     held while scheduling a flush (writer.mu, or gws's Async) and never
//     across a write to the client.
//   - sessionSet.shards[i].mu guards the registry of sessions; each's
//     callback (heartbeat, stats, disconnect, presence refresh) takes
//     Session.mu and must not block.
//   - rateWheel.mu (ratewheel.go) guards the wheel's slots. The fan-out
//     and the wheel's own deliveries take it under hubChannel.mu to put a
//     throttled subscription in a slot; advance takes the due entries out
//     under it and releases it before taking any channel's lock.
//   - rateWheel.firing serialises advance (the wheel's goroutine, or a
//     test turning the wheel by hand) over its scratch lists; held while
//     each due channel's hubChannel.mu is taken in turn.
//   - recovery.mu guards whether a resync runs or is wanted.
//   - writer.mu guards a writer goroutine's run queues, ready and later,
//     its heap of held flushes, and the Reset and Stop of its one timer
//     (push/ws/writers.go, held.go).
//   - ipLimiter.mu guards the per-address connection counts (admission.go).
//   - nodeReports.mu guards the other nodes' latest reports (system.go).
//   - presenceBatch.mu guards the presence ops waiting for the next store
//     call and whether a flush runs (presence_batch.go).
//   - subPresence.mu guards whether a connection is counted in a presence
//     set (joined, left): presence.go, presence_users.go.
//   - canary.mu guards the pub/sub probe's state (canary.go); no broker
//     call is made holding it.
//   - serverSubs.mu guards the queue of server-side subscription requests
//     (serversub.go). Session.pending, guarded by Session.mu, reserves a
//     channel while it is being subscribed, so that the worker's
//     subscribe and the client's own never both attach.
//
// Beneath push, the memory engine (broker/memory.go) takes Memory.mu ->
// memChannel.mu and holds memChannel.mu while it waits for room in a
// delivery queue; its delivery goroutines call Node.HandleMessage, which
// takes hubChannel.mu. So memChannel.mu -> (queue) -> hubChannel.mu, and
// push calls no broker method holding hubChannel.mu or Session.mu.
//
// Functions named ...Locked must be called with the lock their comment
// names ("Must hold ch.mu").
//
// # Long-lived goroutines
//
// Every goroutine that outlives the call that starts it, with its owner:
//
//	goroutine              started by                       ended by
//	Node.heartbeat         Node.Start                       Node.Close (done), waited by Node.wg
//	Node.reportLoop        Node.Start (startSystem)         Node.Close (done), waited by Node.wg
//	canary.loop            Node.Start (startSystem)         Node.Close (done), waited by Node.wg;
//	                                                        its broker calls are cut by Node.life
//	Node.serverSubLoop     Node.Start (startSystem)         Node.Close (done), waited by Node.wg;
//	                                                        each subscribe is bounded by BrokerTimeout
//	recovery.resyncLoop    Node.HandleReconnect, one at a   no pass wanted any more, or done during
//	                       time (requests coalesce)         a retry wait; waited by Node.wg
//	recovery.fill          a gap or a resync finding the    the channel is live again; Close cuts
//	                       broker ahead, one per channel    its reads and waits; waited by Node.wg
//	writer.run (x CPUs)    ws.NewServer (startWriters)      writers.stop, last in Node.Close (AfterClose);
//	                                                        it also runs lagging clients' held flushes
//	                                                        when due (heap and one timer: scheduleAt),
//	                                                        the session's writer owning the transport
//	                                                        until then
//	Node.presenceLoop      Node.Start, when a namespace     Node.Close (done), waited by Node.wg
//	                       keeps presence or a webhook
//	                       wants events
//	Node.flushPresence     applyPresence, the caller that   nothing pending; its callers wait for
//	                       finds none running               it, so it ends one store call after them
//	rateWheel.run (one)    Node.Start                       Node.Close (done), waited by Node.wg;
//	                                                        sleeps while no subscription is held
//	Session.writeOut(true) writeOut, when a socket is full  queue written, write error, or close
//	                                                        (Interrupt cuts its wait to 1 s)
//	Session.leaveChannels  Session.closedSlow, closing a     its subscriptions detached (short-lived;
//	                       slow consumer (session_close.go) Release detaches whatever is left)
//	gws ReadLoop           ws.Server.ServeHTTP, per conn.   the connection closing (OnClose ->
//	                                                        Session.Release)
//	close linger timer     wsTransport.Close                fires after closeLinger, closes the socket
//	wsTransport.closeStalled wsTransport.Close, when the    the client took the close frame, or its
//	                       socket is full (a slow consumer) linger passed (5-6 s); owns the transport
//	/echo ReadLoop         ws.NewEchoSocket.s handler       the connection closing
//
// SSE and long-poll run their session's flushes on the request's own
// goroutine, which ends with the request. The engines' goroutines are
// the engines' own (broker.Memory: delivery queues and sweep, stopped by
// Close; redisbroker: see its package). The webhook senders are
// internal/webhook's (one per webhook, started by Sender.Start, ended by
// Sender.Close in the server's shutdown).
