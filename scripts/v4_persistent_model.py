"""CPU model of the barrier protocol of v4_fwd_persistent_kernel (csrc/cuda/kernels/v4_wgmma/kernel.cuh)
and of its cross-item variant v4_fwd_persistent_xitem_kernel (kernel_xitem.cuh), for changing them without
a GPU: one producer and 4 * W consumer warps step in random interleavings over a random sequence of work
items (some with no key tile), TMA copies complete in random order, and each mbarrier keeps a phase count
and answers try_wait.parity as the hardware does (parity P has completed when the phase count's parity
differs from P). Every shared-memory buffer carries a tag of what was last loaded into it; a consumer
checks the tag when its wait returns and again when it releases the buffer, so a stage or Q buffer
refilled while still being read, a wrong parity, or a deadlock fails an assert.
Consumer loops: "plain" (unpipelined), "overlap" (waits K_{j+1} before V_j), both per item as in
kernel.cuh, with two Q buffers or one (E = 256), each released once the item's last Q K^T has
retired, and "xitem", the chain of kernel_xitem.cuh (the next item's Q and K_0 waited for and its S_0
issued with the current item's last P V, the current Q buffer released when that S_0 retires).
Pingpong turns (named barriers 1 .. W: bar.sync by the warpgroup whose turn it is, bar.arrive by the
one passing it, 256 threads = 8 warps per completion) are modelled for "overlap" (per item, as in
kernel.cuh) and "xitem" (one chain per CTA); a warp entering its turn asserts that no other warpgroup is
inside one, and at the end every named barrier must hold no stray arrival.

    python scripts/v4_persistent_model.py          # prints a line per mode; exit status 1 on a failed assert
    python scripts/v4_persistent_model.py --bugs   # also checks that planted bugs in the xitem order fail
"""
import random
import sys

STAGES = 2


class Bar:
    def __init__(self, count):
        self.count, self.pending, self.phase = count, count, 0

    def arrive(self):
        self.pending -= 1
        assert self.pending >= 0, "more arrivals than the phase expects"
        if self.pending == 0:
            self.phase += 1
            self.pending = self.count

    def done(self, parity):
        return (self.phase & 1) != parity


class NamedBar:
    """bar.sync / bar.arrive with a thread count of 256, counted per warp (8 arrivals complete it)."""

    def __init__(self):
        self.count, self.gen = 0, 0

    def arrive(self):
        self.count += 1
        if self.count == 8:
            self.count, self.gen = 0, self.gen + 1


def run(seed, items, warpgroups, mode, bug=None, Q_STAGES=2):
    rng = random.Random(seed)
    warps = 4 * warpgroups
    turns_on = mode in ("overlap", "xitem")
    q_full, q_empty = [Bar(1) for _ in range(Q_STAGES)], [Bar(warps) for _ in range(Q_STAGES)]
    k_full, v_full = [Bar(1) for _ in range(STAGES)], [Bar(1) for _ in range(STAGES)]
    k_empty, v_empty = [Bar(warps) for _ in range(STAGES)], [Bar(warps) for _ in range(STAGES)]
    q_tag, k_tag, v_tag = [None] * Q_STAGES, [None] * STAGES, [None] * STAGES
    named = [NamedBar() for _ in range(warpgroups)]  # named[c] is barrier 1 + c: warpgroup c's turn
    in_turn = [False] * warps
    in_flight = []  # TMA copies issued, not yet landed

    def land(tags, bars, i, tag):
        def done():
            tags[i] = tag
            bars[i].arrive()
        in_flight.append(done)

    def producer():
        g = q_count = 0
        for it, n in enumerate(items):
            if n == 0:
                continue
            qb = q_count % Q_STAGES
            if q_count >= Q_STAGES:
                while not q_empty[qb].done(((q_count // Q_STAGES) - 1) & 1):
                    yield
            land(q_tag, q_full, qb, it)
            q_count += 1
            for _ in range(n):
                st = g % STAGES
                for empty, tags, full in ((k_empty, k_tag, k_full), (v_empty, v_tag, v_full)):
                    if g >= STAGES:
                        while not empty[st].done(((g // STAGES) - 1) & 1):
                            yield
                    land(tags, full, st, g)
                g += 1
                yield

    def consumer(warp):
        cw = warp // 4

        def acquire(full, tags, g):
            while not full[g % STAGES].done((g // STAGES) & 1):
                yield
            assert tags[g % STAGES] == g, ("stale tile", g, tags[g % STAGES])

        def release(empty, tags, g):
            assert tags[g % STAGES] == g, ("tile overwritten while read", g, tags[g % STAGES])
            empty[g % STAGES].arrive()

        def acquire_q(qc, it):
            qb = qc % Q_STAGES
            while not q_full[qb].done((qc // Q_STAGES) & 1):
                yield
            assert q_tag[qb] == it, ("wrong Q", it, q_tag[qb])

        def read_q(qc, it):  # a Q K^T issued: Q must still be this item's
            assert q_tag[qc % Q_STAGES] == it, ("Q overwritten while read", it, q_tag[qc % Q_STAGES])

        def release_q(qc, it):
            read_q(qc, it)
            q_empty[qc % Q_STAGES].arrive()

        def open_first():
            if turns_on and cw == warpgroups - 1:
                named[0].arrive()

        def turn():  # wait for this warpgroup's turn, issue (one scheduling step), pass it on
            if turns_on:
                bar = named[cw]
                gen = bar.gen
                bar.arrive()
                while bar.gen == gen:
                    yield
                assert not any(in_turn[w] for w in range(warps) if w // 4 != cw), "two warpgroups in a turn"
                in_turn[warp] = True
            yield

        def pass_turn(last):
            if turns_on:
                in_turn[warp] = False
                if not (cw == warpgroups - 1 and last):
                    named[(cw + 1) % warpgroups].arrive()

        if mode == "xitem":
            busy = [it for it, n in enumerate(items) if n > 0]
            g0 = qc = 0
            if busy:
                open_first()
                yield from acquire_q(qc, busy[0])
                yield from acquire(k_full, k_tag, g0)
                yield from turn()
                pass_turn(False)
                release(k_empty, k_tag, g0)
            for idx, it in enumerate(busy):
                n = items[it]
                for j in range(n - 1):
                    yield from acquire(k_full, k_tag, g0 + j + 1)
                    yield from acquire(v_full, v_tag, g0 + j)
                    yield from turn()
                    pass_turn(False)
                    release(k_empty, k_tag, g0 + j + 1)
                    yield
                    release(v_empty, v_tag, g0 + j)
                gl = g0 + n - 1
                if idx + 1 < len(busy):  # the cross step into the next busy item
                    qn, gn = qc + 1, g0 + n
                    yield from acquire_q(qn, busy[idx + 1])
                    yield from acquire(k_full, k_tag, gn)
                    yield from acquire(v_full, v_tag, gl)
                    yield from turn()
                    pass_turn(bug == "pass_last_per_item")
                    release(k_empty, k_tag, gn)
                    if bug == "release_next_q":
                        release_q(qn, busy[idx + 1])
                    else:
                        release_q(qc, it)
                    yield
                    release(v_empty, v_tag, gl)
                    g0, qc = gn, qn
                else:
                    yield from acquire(v_full, v_tag, gl)
                    yield from turn()
                    pass_turn(True)
                    release(v_empty, v_tag, gl)
                    release_q(qc, it)
                yield  # the epilogue (staging tile and TMA store: per warpgroup, not modelled)
            return

        g0 = q_count = 0
        for it, n in enumerate(items):
            if n > 0:
                open_first()
                yield from acquire_q(q_count, it)
                # Q is released once the item's last Q K^T has retired (kernel.cuh, release_q), or, as
                # planted bug "early_q", once its first one has.
                last_s = 0 if bug == "early_q" else n - 1
                if mode == "overlap":
                    yield from acquire(k_full, k_tag, g0)
                    yield from turn()
                    read_q(q_count, it)
                    pass_turn(False)
                    release(k_empty, k_tag, g0)
                    if last_s == 0:
                        release_q(q_count, it)
                    for j in range(n - 1):
                        yield from acquire(k_full, k_tag, g0 + j + 1)
                        yield from acquire(v_full, v_tag, g0 + j)
                        yield from turn()
                        read_q(q_count, it)
                        pass_turn(False)
                        release(k_empty, k_tag, g0 + j + 1)
                        if j + 1 == last_s:
                            release_q(q_count, it)
                        yield
                        release(v_empty, v_tag, g0 + j)
                    yield from acquire(v_full, v_tag, g0 + n - 1)
                    yield from turn()
                    pass_turn(True)
                    release(v_empty, v_tag, g0 + n - 1)
                else:
                    for j in range(n):
                        yield from acquire(k_full, k_tag, g0 + j)
                        read_q(q_count, it)
                        yield
                        release(k_empty, k_tag, g0 + j)
                        if j == last_s:
                            release_q(q_count, it)
                        yield from acquire(v_full, v_tag, g0 + j)
                        yield
                        release(v_empty, v_tag, g0 + j)
                q_count += 1
                g0 += n
            yield

    alive = [producer()] + [consumer(w) for w in range(warps)]
    for _ in range(10**6):
        if not alive:
            assert all(b.count == 0 for b in named), "a turn passed that nobody takes"
            return
        if in_flight and rng.random() < 0.3:
            in_flight.pop(rng.randrange(len(in_flight)))()
            continue
        agent = rng.choice(alive)
        try:
            next(agent)
        except StopIteration:
            alive.remove(agent)
    raise AssertionError("deadlock")


def sequences(runs, seed):
    rng = random.Random(seed)
    for i in range(runs):
        items = [rng.choice([0, 0, 1, 1, 2, 3, 5, 8]) for _ in range(rng.randint(1, 12))]
        yield i, items, rng.choice([2, 3])


def main():
    runs = 3000
    for mode, q_stages in (("plain", 2), ("overlap", 2), ("plain", 1), ("overlap", 1), ("xitem", 2)):
        for i, items, w in sequences(runs, 1):
            run(i, items, warpgroups=w, mode=mode, Q_STAGES=q_stages)
        print(f"v4_persistent_model {mode}, {q_stages} Q buffer(s): {runs} random item sequences, no deadlock, "
              "no buffer refilled while read" + (", turns alternate" if mode != "plain" else ""))
    if "--bugs" in sys.argv:
        # Each planted bug must fail some sequence (a deadlock or an assert), else the model is blind to it.
        for bug, mode, q_stages in (("release_next_q", "xitem", 2), ("pass_last_per_item", "xitem", 2),
                                    ("early_q", "overlap", 1)):
            failed = 0
            for i, items, w in sequences(300, 2):
                try:
                    run(i, items, warpgroups=w, mode=mode, bug=bug, Q_STAGES=q_stages)
                except AssertionError:
                    failed += 1
            print(f"planted bug {bug}: {failed}/300 sequences fail")
            if failed == 0:
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
