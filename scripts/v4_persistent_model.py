"""CPU model of the barrier protocol of v4_fwd_persistent_kernel (csrc/cuda/kernels/v4_wgmma/kernel.cuh),
for changing it without a GPU: one producer and 4 * W consumer warps step in random interleavings over a
random sequence of work items (some with no key tile), TMA copies complete in random order, and each
mbarrier keeps a phase count and answers try_wait.parity as the hardware does (parity P has completed
when the phase count's parity differs from P). Every shared-memory buffer carries a tag of what was last
loaded into it; a consumer checks the tag when its wait returns and again when it releases the buffer,
so a stage or Q buffer refilled while still being read, a wrong parity, or a deadlock fails an assert.
Both consumer loops are modelled (the overlapped one waits K_{j+1} before V_j); pingpong turns, which
only order the warpgroups among themselves, are not.

    python scripts/v4_persistent_model.py   # prints one line; exit status 1 on a failed assert
"""
import random
import sys

STAGES, Q_STAGES = 2, 2


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


def run(seed, items, warpgroups, overlap):
    rng = random.Random(seed)
    warps = 4 * warpgroups
    q_full, q_empty = [Bar(1) for _ in range(Q_STAGES)], [Bar(warps) for _ in range(Q_STAGES)]
    k_full, v_full = [Bar(1) for _ in range(STAGES)], [Bar(1) for _ in range(STAGES)]
    k_empty, v_empty = [Bar(warps) for _ in range(STAGES)], [Bar(warps) for _ in range(STAGES)]
    q_tag, k_tag, v_tag = [None] * Q_STAGES, [None] * STAGES, [None] * STAGES
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

    def consumer():
        g0 = q_count = 0

        def acquire(full, tags, g):
            while not full[g % STAGES].done((g // STAGES) & 1):
                yield
            assert tags[g % STAGES] == g, ("stale tile", g, tags[g % STAGES])

        def release(empty, tags, g):
            assert tags[g % STAGES] == g, ("tile overwritten while read", g, tags[g % STAGES])
            empty[g % STAGES].arrive()

        for it, n in enumerate(items):
            if n > 0:
                qb = q_count % Q_STAGES
                while not q_full[qb].done((q_count // Q_STAGES) & 1):
                    yield
                assert q_tag[qb] == it, ("wrong Q", it, q_tag[qb])
                if overlap:
                    yield from acquire(k_full, k_tag, g0)
                    yield
                    release(k_empty, k_tag, g0)
                    for j in range(n - 1):
                        yield from acquire(k_full, k_tag, g0 + j + 1)
                        yield from acquire(v_full, v_tag, g0 + j)
                        yield
                        release(k_empty, k_tag, g0 + j + 1)
                        yield
                        release(v_empty, v_tag, g0 + j)
                    yield from acquire(v_full, v_tag, g0 + n - 1)
                    yield
                    release(v_empty, v_tag, g0 + n - 1)
                else:
                    for j in range(n):
                        yield from acquire(k_full, k_tag, g0 + j)
                        yield
                        release(k_empty, k_tag, g0 + j)
                        yield from acquire(v_full, v_tag, g0 + j)
                        yield
                        release(v_empty, v_tag, g0 + j)
                assert q_tag[qb] == it, ("Q overwritten while read", it, q_tag[qb])
                q_empty[qb].arrive()
                q_count += 1
                g0 += n
            yield

    alive = [producer()] + [consumer() for _ in range(warps)]
    for _ in range(10**6):
        if not alive:
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


def main():
    rng = random.Random(1)
    runs = 3000
    for seed in range(runs):
        items = [rng.choice([0, 0, 1, 1, 2, 3, 5, 8]) for _ in range(rng.randint(1, 12))]
        run(seed, items, warpgroups=rng.choice([2, 3]), overlap=rng.random() < 0.7)
    print(f"v4_persistent_model: {runs} random item sequences, no deadlock, no buffer refilled while read")
    return 0


if __name__ == "__main__":
    sys.exit(main())
