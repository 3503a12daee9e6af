package worker

import "time"

// schedule decides when the worker next reads the command record: fast
// while it waits for something (its start command, a commit), fast around
// the time the next checkpoint is expected, and otherwise slower and
// slower up to a ceiling. It is pure bookkeeping on the times it is given.
type schedule struct {
	fast, ceiling time.Duration
	// window bounds the fast reads around an expected checkpoint, and
	// pendingWindow those while waiting for a commit, so a checkpoint that
	// never comes (it failed elsewhere) costs no more than that.
	window, pendingWindow time.Duration

	backoff time.Duration
	seen    bool
	version int64

	// The newest checkpoint epoch seen, when it was first seen, and when
	// it most likely appeared: between the read before (lastRead) and
	// the read that saw it, so in the middle. narrow says that interval
	// was short enough (two fast reads) to measure the spacing with.
	epoch    int64
	epochAt  time.Time
	appeared time.Time
	narrow   bool
	lastRead time.Time
	spacing  time.Duration
	// interval is the checkpoint interval the record states (0: none).
	// The controller starts a checkpoint no sooner than that after the
	// one before, so the next appears in (low + interval, epochAt +
	// interval], where low is the newest epoch's earliest possible
	// appearance: after the read before the one that saw it, and at
	// least an interval after the epoch before's low.
	interval time.Duration
	low      time.Time
	// lowSpacing is how far apart the newest two epochs most likely
	// appeared: between the middles of (low, epochAt] of each.
	// Checkpoints that take longer than the interval come further apart
	// than it (the next starts only after the last ended), and the reads
	// for the next follow them.
	lowSpacing time.Duration

	waiting      bool      // for the start command of the run
	pendingSince time.Time // zero unless waiting for a commit
	// commitLag is how long the last commit took to appear after the
	// worker began waiting for it; the next wait reads fast only from
	// shortly before that.
	commitLag time.Duration
}

func newSchedule(fast, ceiling, window, pendingWindow time.Duration) *schedule {
	return &schedule{fast: fast, ceiling: ceiling, window: window, pendingWindow: pendingWindow, backoff: fast, waiting: true}
}

// observation is what one read of the command record found.
type observation struct {
	version int64
	epoch   int64 // the record's checkpoint epoch, 0 for none
	// waiting: the record does not yet start this worker's run.
	waiting bool
	// awaitingCommit: a committing subtask checkpointed an epoch the
	// record does not yet ask to commit.
	awaitingCommit bool
	// quiet: what changed (if anything) needs no follow-up reads beyond
	// those the other fields ask for: a new checkpoint or commit.
	quiet bool
	// interval is the record's checkpoint interval (0: not stated).
	interval time.Duration
}

func (s *schedule) observe(now time.Time, o observation) {
	if !o.waiting {
		s.interval = o.interval
	}
	if o.epoch > s.epoch {
		s.newEpoch(now, o.epoch)
	}
	s.lastRead = now
	s.waiting = o.waiting
	switch {
	case !o.awaitingCommit:
		if !s.pendingSince.IsZero() {
			if lag := now.Sub(s.pendingSince); lag < s.pendingWindow {
				s.commitLag = lag
			}
		}
		s.pendingSince = time.Time{}
	case s.pendingSince.IsZero():
		s.pendingSince = now
	}
	if !s.seen || o.version != s.version {
		s.seen, s.version = true, o.version
		if o.quiet {
			s.backoff = s.ceiling
		} else {
			s.backoff = s.fast
		}
	}
}

// newEpoch learns from a checkpoint epoch seen for the first time. The
// spacing of checkpoints is measured between the likely appearances of
// consecutive epochs once both were seen within two fast reads (a rough
// first guess comes from when they were seen), so the estimate does not
// drift with however late a slow read saw one.
func (s *schedule) newEpoch(now time.Time, epoch int64) {
	width := 2 * s.ceiling // unknown: as good as no bracket
	if !s.lastRead.IsZero() {
		width = now.Sub(s.lastRead)
	}
	appeared := now.Add(-width / 2)
	narrow := width <= 2*s.fast
	low := now.Add(-width)
	if s.interval > 0 && s.epoch > 0 && epoch == s.epoch+1 && s.low.Add(s.interval).After(low) {
		low = s.low.Add(s.interval)
	}
	low = earliest(low, now)
	s.lowSpacing = 0
	if s.epoch > 0 && epoch == s.epoch+1 {
		s.lowSpacing = (low.Sub(s.low) + now.Sub(s.epochAt)) / 2
	}
	s.low = low
	if s.epoch > 0 && epoch == s.epoch+1 {
		switch d := appeared.Sub(s.appeared); {
		case narrow && s.narrow && d >= 2*s.fast:
			if s.spacing > 0 {
				d = (s.spacing + d) / 2
			}
			s.spacing = d
		case s.spacing == 0 && now.Sub(s.epochAt) >= 2*s.fast:
			s.spacing = now.Sub(s.epochAt)
		}
	}
	s.epoch, s.epochAt, s.appeared, s.narrow = epoch, now, appeared, narrow
}

// expected is when the checkpoint after the newest one seen most likely
// appears: when the interval the record states has passed since the read
// that saw the newest, or, if the record states none, once two in a row
// have shown the spacing.
func (s *schedule) expected() (time.Time, bool) {
	if from, _, ok := s.stated(); ok {
		return from, true
	}
	if s.spacing <= 0 {
		return time.Time{}, false
	}
	return s.appeared.Add(s.spacing), true
}

// stated is when to read fast for the next checkpoint when the record
// states the interval: it comes in (low + interval, epochAt + interval]
// if it follows the newest exactly an interval later, or a little after
// if the controller started it late. The first read is a fast interval
// after its earliest appearance, or when it is due at the latest if that
// is sooner, so it is seen within a fast interval and the time it is seen
// never drifts later from one checkpoint to the next. When the newest was
// seen late (a slow read), the fast reads cover at most a window before
// it is due at the latest, and one after. When checkpoints come
// much further apart than the interval, the reads start half a window
// before the spacing of the last two would bring the next.
func (s *schedule) stated() (from, until time.Time, ok bool) {
	if s.interval <= 0 || s.epoch == 0 {
		return time.Time{}, time.Time{}, false
	}
	interval := max(s.interval, s.lowSpacing-s.window/2)
	latest := s.epochAt.Add(interval)
	from = earliest(latest, s.low.Add(interval+s.fast))
	if floor := latest.Add(-s.window); from.Before(floor) {
		from = floor
	}
	return from, latest.Add(s.window), true
}

// next is how long to wait before the next read.
func (s *schedule) next(now time.Time) time.Duration {
	if s.waiting {
		return s.fast
	}
	if !s.pendingSince.IsZero() && now.Sub(s.pendingSince) < s.pendingWindow {
		// The commit comes about as long after the checkpoint as the last
		// one did: the first read is one fast interval before that.
		if wait := s.pendingSince.Add(s.commitLag - s.fast).Sub(now); wait > s.fast {
			return wait
		}
		return s.fast
	}
	// Fast reads begin one fast interval before the expected checkpoint,
	// so that the read before the one that sees it is close to it; at the
	// expected time itself when the record states the interval, since
	// nothing comes earlier. The first read then sees the checkpoint
	// unless the controller started it late, and the time it is seen
	// never drifts later: it is the next one's starting point.
	exp, known := s.expected()
	start, until := exp.Add(-s.fast), exp.Add(s.window)
	if from, end, ok := s.stated(); ok {
		start, until = from, end
	}
	if known && !now.Before(start) && now.Before(until) {
		return s.fast
	}
	d := max(s.backoff, s.fast)
	s.backoff = min(2*s.backoff, s.ceiling)
	if known && start.After(now) && start.Sub(now) < d {
		// Never sleep past the start of the expected checkpoint's window.
		d = start.Sub(now)
	}
	return d
}

func earliest(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
