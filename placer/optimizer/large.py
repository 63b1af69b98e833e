"""The scalable route: the same placement problem as ``solve.optimize``, for fleets of any size.

    1. pairs and routes as arrays (``arrays``), the model as one sparse matrix (``matrix``),
       with cover cuts that make its LP see that replicas come whole;
    2. a fractional plan and a bound. ``lp`` mode: the LP relaxation by column generation over
       pairs (``lp``), seeded with a greedy plan, the cheapest routes, a few failure domains and
       what runs now; its duals price every pair into a valid (Lagrangian) bound. ``replan``
       mode (what runs now covers most models) starts from the current replicas, on a model of
       the pairs around them alone (beyond SMALL_PAIRS: those its search would use), and ``direct``
       mode (fleets beyond LP_PAIRS, or whose first LP round did not finish in time) from the
       greedy plan; both take their bound from duals set without an LP (``lp.simple_duals``);
    3. a first plan (``repair``): round up the inference replicas the LP wants most of where they
       fit, the rest down, cover what is left with the cheapest capacity the rules allow,
       complete routes, nodes and policy variables exactly model by model, and
       place the models whose rules the rounding broke with small MIPs around the others;
    4. on small models, HiGHS on the whole model from that plan (for its bound as well); then a
       sweep (``lns.sweep``): each model re-placed by a small MIP around all the others, those
       paying most for replica capacity their routes leave idle (or for unserved demand) first,
       in passes, on Settings' solver.workers threads (at most MAX_SEARCH_THREADS; an answer is
       taken only if it still holds against the plan as it is when it comes back); then a MIP
       that picks one configuration per model among those the sweep saw and, after the LP,
       each model's LP replicas gathered onto fewer pools and each model's best configuration
       at the LP's duals (``recombine``; beyond RECOMBINE_PAIRS, one such MIP per part of the
       fleet, the other models kept); when that moved models, a sweep again around them;
    5. neighbourhood search (``lns``): small MIPs over the models on a pool with idle paid GPUs,
       around unserved demand, sharing pools, or at random, each started from the incumbent,
       until the time is up, the gap is closed, or steps stop paying;
    6. a polish LP: integers fixed, routes and unmet re-optimized exactly; then the replicas and
       nodes that neither a route nor a rule needs dropped (``trim``), and the routes again.

The bound reported is valid for the whole problem: the Lagrangian bound, or HiGHS' bound when it
solved the whole model. The objective is the plan's cost term by term, exactly as
``placer.cost.price`` computes it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from placer.candidates import Candidates, Exclusions, stranded_minimum
from placer.fleet import Fleet
from placer.knobs import env_choice, env_number
from placer.optimizer.arrays import (
    ArrayCandidates,
    BoolArray,
    FleetArrays,
    FloatArray,
    IntArray,
    build_arrays,
)
from placer.optimizer.bound import Lagrangian, linking_reduced_costs
from placer.optimizer.greedy import greedy, model_size, per_rate_cost, per_replica_cost, pseudo_lp
from placer.optimizer.highs import IdleCores, solve
from placer.optimizer.lns import Neighbourhoods, construct, improve, solve_free, sweep
from placer.optimizer.lp import (
    LpResult,
    Master,
    PairTables,
    Prices,
    bound_on_line,
    cheapest_in_groups,
    column_generation,
    domain_cover,
    initial_pairs,
    lagrangian,
    simple_duals,
    simple_prices,
)
from placer.optimizer.matrix import ROW_TOLERANCE, MatrixModel, build_matrix
from placer.optimizer.quiet import DEBUG, debug
from placer.optimizer.recombine import (
    ONTO,
    Configurations,
    consolidated,
    master_duals,
    pricing_mode,
    recombine,
)
from placer.optimizer.repair import complete, covered, round_and_cover
from placer.optimizer.solve import SolveResult, available_cores, relative_gap
from placer.placement import Placement, Route
from placer.policy import Rules

SMALL_PAIRS = 30_000  # up to this many pairs, a re-plan's model holds every pair
# up to this many pairs, every MIP may use every pair; beyond, each model's pairs nearest to
# pricing out and those its plans use (M, 24,831 pairs: 9,276 -> 9,252 USD/h on average over
# five and six runs, as a sweep step over fewer pairs is quicker and the sweep reaches more models)
EVERY_PAIR = 10_000
# up to this many columns, HiGHS also gets the whole model (for a plan, and its bound). Beyond, the
# search does better: at 5 s, with and without it, 60 x 25 (1,862 columns) 1,108.09 against
# 1,113.36 and 80 x 25 (2,408) 1,411.89 against 1,420.64, but 100 x 30 (3,178) 3,003.38 against
# 2,945.48, 200 x 40 (7,649) 4,965.12 against 4,827.98 and 300 x 60 (18,613) 6,357.84 against
# 6,089.81; at 30 s, 100 x 30 2,932.93 against 2,927.17 and 200 x 40 4,846.00 against 4,815.58
# (bench.generate fleets, seed 0). Its root node can outrun any time limit: it runs isolated
FULL_MIP_COLS = 3_000
FULL_MIP_SHARE = 0.9  # of the time left: on small models HiGHS from the first plan beats the neighbourhood search
CANDIDATES_PAIRS = 100_000  # up to this many pairs, the result carries full Candidates
LP_PAIRS = 8_000_000  # beyond this many pairs the LP does not fit the time: plan from the greedy plan
REPLAN_SHARE = 0.5  # re-plan from what runs when it covers this share of the models
# ... and its replicas could serve this share of the demand: a re-plan's short search around what
# runs suits a change of a few percent, not demand doubled (bench M x2 re-planned from its plan:
# objective 25,943.60 with 7,263 of rate unmet in 0.8 s, where the whole route finds 19,948.82
# with 2,478 in 4.6 s, its moves priced as churn all the same; a fresh plan so priced, 20,441.07)
# or a large pool lost
REPLAN_SERVES = 0.9
PATIENCE = 24  # neighbourhood steps without gain before stopping
REPLAN_PATIENCE = 8
# share of the time limit a whole re-plan takes, its time to stay within 20% of a first plan's:
# its search gets what building its model and first plan leave of it (at least
# REPLAN_SEARCH_LEAST of the limit). Held to the search alone (0.12 of the limit), the rest grew
# with a slower machine: M's re-plan took 0.66 s of 5 on one machine and 0.88 s of 4.64 (0.19)
# on a slower one. From one first plan each, a 5% demand change re-planned three times: M
# 7,903-7,907 with a search of 0.12 (0.66 s) against 7,925-7,938 with 0.05 (0.32 s); L 32,655.5
# (4.0 s) against 32,724-32,756 (1.9-2.0 s)
REPLAN_TIME = 0.15
REPLAN_SEARCH_LEAST = 0.03
# a re-plan's bound, from simple prices, lies far below the optimum: at bench M 6,007 USD/h, where
# the LP of the same re-plan with cover cuts proves 7,508 (0.37 s, half the re-plan's time) and
# the plan costs 7,910: a gap of 24% where 5% is proven; the plan says so beside its gap
REPLAN_NOTE = (f"re-planned around what runs, a short search in {REPLAN_TIME:.0%} of solver.timeLimitSeconds: its "
               "bound comes from simple prices, not the LP, and lies far below the best plan's cost, so the gap "
               "overstates what a longer search could save; `placer plan --full-search` searches the whole fleet "
               "in the whole time, its moves priced as churn")
REPLAN_ROUTES = 4  # per demand entry, a re-plan's model holds its cheapest routes to elastic pools
REPLAN_FREE_REPLICAS = 1  # with room for this many replicas now (and as many on on-demand pools)
# of the time left, at most, for the LP (column generation). At XL its rounds take 8-9, 20-22 and
# 21-23 s (LP 181,450, 173,357, 171,751; converged 171,392 after nine): with 0.6 the third round
# fits on this machine (plans 188,512 and 188,555 against 189,314 and 189,359 after two, the sweep
# then finishing its third pass instead of a fifth, which gains little: 35 USD/h)
LP_SHARE = 0.6
# the same, when the LP's masters run on the search's threads (fleets of PARALLEL_LP_PAIRS pairs in
# the first master, on a machine with cores idle: ``lp.column_generation``). XL's rounds then take
# 6, 14 and 15 s; given 0.6, seven rounds converge the LP (171,392; bound 171,404), but the search
# after it has 20 s less: plans 186,857-187,778 (mean 187,253, four runs) against 186,507-186,853
# (mean 186,711, four) with 0.45 and three rounds, and 186,985-187,275 (mean 187,099, four) for
# three rounds on one thread, side by side
LP_SHARE_PARALLEL = 0.45
# from this many pairs in the first master (XL 130,003: 675,607 columns; L 24,229 and M 5,139,
# whose LP rounds of 0.1-1 s gain less than a child process costs them)
PARALLEL_LP_PAIRS = 60_000
# of the time limit, at most, for the bound of an LP stopped early (``lp.bound_on_line``; XL: 16
# points, 2.5 s, took it from 142,879 to 160,166 USD/h against 186,805 for the plan)
LINE_SHARE = 0.02
LP_STOP_GAP = 5e-4  # column generation stops when the LP is this close to its bound (the rounding gains nothing more)
NEAR_PAIRS = 16  # per model, the pairs nearest to pricing out the MIPs may use (PLACER_NEAR_PAIRS)
SWEEP_SHARE = 0.85  # of the search time: one-model re-placements, before the neighbourhood search
SWEEP_SHARE_LP = 0.25  # the same, when the recombination gets the LP's configurations as well
MAX_SEARCH_THREADS = 4
RECOMBINE_SHARE = 0.05  # of the time limit, at most, for the MIP over the configurations seen
# with the LP's consolidated and priced configurations as well: that master takes longer, and it is
# where a plan gains most (each model's configuration at the LP's duals; see ``PRICE_SHARE``).
# Shares measured side by side, (sweep, recombination): M 9,059-9,066 with (0.25, 0.5), 9,067-9,087
# with (0.25, 0.6), 9,077-9,103 with (0.4, 0.5); L 37,070-37,095 with (0.25, 0.5), 37,103-37,117 with
# (0.25, 0.4), 37,115-37,136 with (0.25, 0.6), 37,144-37,183 with (0.4, 0.5) (a shorter sweep, and
# a master that leaves a re-sweep time after it)
RECOMBINE_SHARE_LP = 0.5
CONSOLIDATE_SHARE = 0.3  # of that time, at most, to complete the LP's configurations (M 0.05 s, L 0.5-0.8 s)
# with at least this much time for that master, every way of gathering the LP's fractions (at L,
# 9 s: 37,661 USD/h against 37,838 with the first alone). At M, 2.4 s: with all three 9,008-9,043,
# with the first alone 9,032-9,051 (six runs each, side by side, with the priced configurations
# and a master search per thread; before them, a 1.5 s master found no better plan with all three)
ALL_ONTO_SECONDS = 1.0
# of the time left after a recombination that moved models: a sweep around them (L: 1.5-2.4 s, and
# plans 37,523-37,548 against 37,566-37,587 with the neighbourhood search alone, three runs each)
RESWEEP_SHARE = 0.5
RECOMBINE_PAIRS = 1_000_000  # one master up to this many pairs; beyond, a master per part of the fleet
# models per part (``model_parts``), each master with the others as they are. At XL (10,000 models,
# one way of gathering the LP's fractions, one run each): parts of 500 188,367 USD/h, 1,000 187,710,
# 2,000 186,676-187,011 (three runs), 5,000 189,097 (its masters found nothing in 6-9 s); 188,476-188,555
# with no recombination. A master over all 10,000 found nothing in 33 s
PART_MODELS = 2_000
# of that time left after the LP's consolidated configurations: each model's least-cost configuration
# at the LP's duals, one small MIP per model (``Configurations.add_priced``; M 1.1-1.2 s for its 500
# models, L 4.8-4.9 s for 2,000). Side by side with the route before it (no pricing; shares of the
# sweep and recombination 0.6 and 0.3): M 9,055-9,093 against 9,173-9,202 (four runs each), L
# 37,104-37,150 against 37,518-37,543 (two each). Without the LP's consolidated configurations
# but with the priced ones: M 9,103-9,124, L 37,213-37,217
PRICE_SHARE = 0.5
# per model, the pairs nearest to pricing out its pricing MIP may use, with those the LP and the plan
# use (M, three runs each: 2 pairs 9,104-9,127, 4 pairs 9,069-9,085, 8 pairs 9,068-9,078, 16
# 9,062-9,077, every pair 9,068-9,104). More pairs make better columns where pricing has the time
# to reach every model and fewer models priced where it has not: with 32 (about 19 pairs a model,
# against 9.4-9.9 with 8), L 37,003-37,111 (four runs) against 37,091-37,119 (five), its 2,000
# models priced in 6.6-6.8 s; M 9,060-9,085 against 9,051-9,080 (six each), 354 of its 500 priced
PRICE_NEAR = 8
# with pricing's time left once every model is priced over PRICE_NEAR pairs: again over this many,
# the models whose configuration costs most at the duals first. L, three runs each: 37,009-37,073
# (2,547-2,599 configurations priced in 6.6-7.1 s) against 37,078-37,101 (1,990-1,992 in 4.8-4.9
# s); M has the time for it and no second round (9,042-9,069 against 9,054-9,083; see SECOND_ROUND)
PRICE_WIDE = 32
# a second round of pricing, where the first leaves the time for it (SECOND_ROUND), at prices this
# share of the way from the master LP's duals to the LP's (Wentges' smoothing, centred on the LP's
# duals, which give a near-best Lagrangian bound): on one dumped L
# state, the master's LP 36,801 after the first round's two passes and 36,683 after a second round
# (0.5), 36,701 (0, the master's own duals), 36,717 (0.8); its MIP given 7 s 37,083 after one
# round, 36,916, 36,990 and 37,007 after two. The route at L, side by side: 36,930-36,972 (four
# runs) against 37,026-37,062 (three) with the first round alone
SMOOTHING = 0.5
# the second round runs when the window left is at least this share of the first round's time; it
# prices the models in the same order, as far as the window goes. A part of a second round pays at
# L: given 0.4 of the time left instead of 0.5 (a 5.1 s window, 1.9 s left after the first round's
# 3.2 s), three runs each side by side, 36,983-37,007 with it (share 0.5) against 37,041-37,064
# without. At M it does not: M's first round takes 0.6 s of its 1.2 s window, and a share of 0.5
# gives the rest to a second round instead of the wider pass (PRICE_WIDE): 9,020-9,058, mean
# 9,041.9, against 9,007-9,042, mean 9,033.3 (ten runs each, side by side; six more each: 9,031.2
# against 9,026.5). So a whole round's time it stays; at L, where the first round takes about half
# the window, a run now and then misses the second round (1 of 13 runs: 37,044 against 36,930-37,006)
SECOND_ROUND = 1.0
# with the time for this many rounds over every pair of each model (a round's time guessed from the
# first's, over the nearest pairs, by the square root of the ratio of pairs: at M 0.6 s over about
# 5,000 pairs, 1.9 s over 24,831), pricing runs over every pair, round after round; at the bench's
# limits (M 5 s, L 30 s) the window holds no such rounds. M given more time, side by side: at 30 s
# 8,954-8,967 (three runs) against 8,976-8,995 with the nearest pairs, at 60 s 8,963-8,968 (two)
# against 8,978-8,980; at 120 s 8,947.11 and 8,950.41 (7 and 8 rounds, the master's LP 8,907,
# against (c') 8,904.61) against 8,974.50. Over the nearest pairs alone, round after round, the
# master's LP stops at 8,955.01, and plans gain nothing (30 s 9,004.44, 60 s 8,975.39)
# At L, given 120 s, its guess keeps them out (forced over every pair, a round takes 14.5 s, the
# window holds two, and the plan is 37,016.99)
EVERY_PAIR_ROUNDS = 3
# where the window holds no rounds over every pair but AT_PRICES_ROUNDS over the pairs cheapest at
# each round's prices (``pairs_at_prices``, this many per model and per demand entry by each of
# its measures), those. L given 120 s: the master's LP 36,526 after seven such rounds (16,600-17,000
# pairs, 3.5-4.1 s a round), where rounds over the nearest pairs stop at 36,734 (five rounds), and
# plans 36,686.05, 36,719.41, 36,754.43 and 36,759.75 against 36,841.38, 36,846.27 and 36,855.76
# with two rounds over the nearest pairs; the nearest pairs' ranking at the LP's duals misses
# configurations that mix spot and on-demand pools (a spot cap) or take one replica of a small
# pool. L given 90 s (five rounds): 36,761.82 and 36,796.60 against 36,843.76 and 36,847.36. M at
# 15 s and 20 s (four to six rounds): 8,975.39, 8,957.70, 8,961.91 and 8,986.79 against 8,977.86,
# 8,980.85, 8,981.40 and 8,978.43
PRICED_PAIRS = 2
# at L given 60 s the window holds three such rounds (10.1-10.3 s). Each over every model, the
# master had less time for more configurations, and plans were worse: 36,943.35, 36,945.95,
# 36,949.12 against 36,849.91, 36,864.69, 36,892.96 with the nearest pairs. With the rounds between
# WHOLE_EVERY's over some models alone, they pay there: 36,871.33, 36,872.83, 36,851.91 against
# 36,892.20, 36,893.72, 36,858.16 (side by side, with five rounds: the nearest pairs)
AT_PRICES_ROUNDS = 3
MAX_ROUNDS = 40
# partial pricing: after the first round, a round prices the models the round before improved
# (whose priced configuration beat every one recorded for them), and every WHOLE_EVERY-th round
# every model (models left out a round improve again when the prices move on). At L, from one
# state after the first round, over the pairs at each round's prices: the master's LP 36,607.51
# after 10.8 s of pricing and 36,540.75 after 16.5 s, against 36,729.78 after 10.5 s and 36,538.49
# after 24.3 s pricing every model every round; over the improved models alone, never every model,
# it stalls at 36,700.72. At M over every pair: 8,911.86 after 5.4 s against 8,910.08 after 7.8 s.
# Plans, side by side (partial and AT_PRICES_ROUNDS 3, against every model and 5): M 15 s
# 8,959.45, 8,970.25, 8,968.90 against 8,982.54, 8,986.90, 8,963.54; M 30 s 8,960.40, 8,951.89
# against 8,960.75, 8,966.51; M 60 s 8,947.35 against 8,952.68; L 45 s (the nearest pairs both)
# 36,857.05, 36,862.26 against 36,881.59, 36,862.72; L 90 s 36,727.56 against 36,736.76; L 120 s
# 36,717.59, 36,726.99 against 36,732.64, 36,755.38. Where only the nearest pairs' two rounds fit
# (M 5 s, L 30 s), the second prices every model as before (over some alone, L 30 s 37,028.20 in
# one run, the wider pass then reaching fewer models)
WHOLE_EVERY = 3
MASTER_STOP = 1e-5  # rounds stop when the master's LP fell less than this share since the last
# where the batch prices (``pricing_mode``), a round after which the master's LP fell less than this
# share is followed by one of HiGHS on every model. The batch's local search stalls where HiGHS does
# not: at M its rounds at prices leave the master's LP at 8,945-8,949 USD/h, where a round by HiGHS
# over the same pairs brought it to 8,921-8,924 at once (three runs, 2026-12-02), and more batch
# rounds moved it by 0.02; at those prices HiGHS' answer beat every configuration recorded for 67
# of the batch's 445 models, by 27 USD/h in all, and the batch's for 6. Those masters, solved again
# at the route's 1.1 s, found 9,004.8-9,037.5 against 9,039.8-9,040.6 without the round's columns.
# In the route, side by side (M at 5 s, alternated): seed 0 9,030.3 USD/h mean over 14 runs against
# 9,036.2, seed 1 10,803.0 over 16 against 10,820.5 (whose last master found nothing in one run,
# 11,083.09). The round takes about 1 s at M: the window ends it part-way, the models whose
# configuration in the plan costs most at the round's prices priced first. Given more of the window
# for it (0.6 of the time left where the batch prices, not PRICE_SHARE), the master's own window
# fell to 0.7-0.9 s, and at seed 1 it found nothing in 3 runs of 16 (10,870.6)
BATCH_STALL = 1e-3
GRACE = 0.25  # share of the time limit the first plan may run over rather than return none
# of the time limit, kept from the neighbourhood search for dropping what no route or rule needs
# (``trim``) and re-routing around what is left: per second it gains far more than the search's
# last steps (L: 124 USD/h in 2.2 s on a loaded machine, where the search gains a few USD/h)
TRIM_SHARE = 0.03
TRIM_ROUNDS = 3


def cut_levels(n_pairs: int) -> int:
    """Throughput levels per cover cut group: each tightens the LP, and slows it down."""
    return int(env_number("PLACER_CUT_LEVELS", 4 if n_pairs <= 100_000 else (2 if n_pairs <= 1_500_000 else 1),
                          whole=True))


def near_pairs() -> int:
    """Per model, the pairs nearest to pricing out that the MIPs may use: ``PLACER_NEAR_PAIRS``, else
    NEAR_PAIRS. Read here, not at import: ``abc`` failed every plan with Python's traceback."""
    return int(env_number("PLACER_NEAR_PAIRS", NEAR_PAIRS, whole=True, least=1))


@dataclass
class LargeResult:
    status: str
    placement: Placement | None
    objective: float
    bound: float
    wall_seconds: float
    terms: dict[str, float]
    stats: dict[str, float] = field(default_factory=dict)
    values: FloatArray | None = None
    candidates: Candidates | None = None
    log: list[str] = field(default_factory=list)  # each step done: "name: 0.21s note" (``Clock.mark``)
    note: str = ""  # SolveResult.note
    replan: bool = False  # SolveResult.replan

    @property
    def gap(self) -> float:
        return relative_gap(self.objective, self.bound) if self.placement is not None else math.inf

    def as_solve_result(self) -> SolveResult:
        return SolveResult(self.status, self.placement, self.objective, self.bound, self.wall_seconds,
                           dict(self.terms), self.candidates, self.note, self.replan)


class Clock:
    def __init__(self, limit: float, say: Callable[[str], None]) -> None:
        self.start = time.monotonic()
        self.limit = limit
        self.say = say
        self.marks: dict[str, float] = {}
        self.log: list[str] = []  # each step done, its time and note: the route's record (tests read it)
        self._last = self.start

    def left(self) -> float:
        return self.limit - (time.monotonic() - self.start)

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def begin(self, step: str) -> None:
        """Say the step that starts now: progress shows what the route is doing, where it showed the
        step just done (``mark``'s)."""
        self.say(step)

    def mark(self, name: str, note: str = "") -> None:
        """Note how long step ``name`` took (``stats``; printed with its note under PLACER_DEBUG)."""
        now = time.monotonic()
        self.marks[name] = now - self._last
        self._last = now
        self.log.append(f"{name}: {self.marks[name]:.2f}s {note}")
        if DEBUG:
            debug(f"[large] {name}: {self.marks[name]:.2f}s (total {now - self.start:.2f}s) {note}")


def fallback_pairs(model: MatrixModel, per_rate: FloatArray | None = None) -> BoolArray:
    """Per demand entry, its cheapest route to an elastic on-demand pool: capacity that other models'
    rounding cannot use up, so that every demand keeps a way to be served. ``per_rate``:
    ``per_rate_cost(model)``, when the caller has it."""
    a = model.arrays
    out = np.zeros(a.n_pairs, dtype=bool)
    pool = a.pair_pool[a.route_pair]
    ok = np.flatnonzero(a.pool_elastic[pool] & ~a.pool_spot[pool])
    if not len(ok):
        return out
    unit = (per_rate_cost(model) if per_rate is None else per_rate)[ok]
    out[a.route_pair[ok[cheapest_in_groups(unit, a.route_dem[ok], 1)]]] = True  # routes come by demand entry
    return out


def objective_terms(model: MatrixModel, v: FloatArray) -> dict[str, float]:
    """The cost of a model vector, term by term, without tie-breaks (SPEC section 2); churn against
    the replicas the model was built with (``model.current``)."""
    a = model.arrays
    obj = a.fleet.settings.objective
    x = np.round(v[model.block("x")])
    y = v[model.block("y")]
    elastic_pair = a.pool_elastic[a.pair_pool]
    compute = float(np.sum(np.where(elastic_pair, 0.0, a.pool_price[a.pair_pool] * a.pair_c) * x))
    el = np.flatnonzero(model.elastic_col >= 0)
    compute += float(np.sum(a.pool_price[el] * a.pool_per_node[el] * np.round(v[model.elastic_col[el]])))
    rm = a.dem_model[a.route_dem]
    total_demand = np.array([m.total_demand for m in a.models])
    with np.errstate(divide="ignore", invalid="ignore"):
        eg_y = np.where(total_demand[rm] > 0, a.pair_egress[a.route_pair] / total_demand[rm], 0.0)
        wanted = np.array([float(m.spec.replicas or 0) if not m.inference else 0.0 for m in a.models])
        eg_x = np.where(wanted[a.pair_model] > 0, a.pair_egress / wanted[a.pair_model], 0.0)
    egress = float(np.sum(eg_y * y) + np.sum(eg_x * x))
    latency = float(obj.latency_usd_per_ms_per1k_rate * np.sum(a.route_latency * y) / 1000.0)
    unmet = float(model.cost[model.block("u")] @ v[model.block("u")]) + model.unserved_usd
    ks = model.block("k")
    unmet += float(model.cost[ks] @ np.round(v[ks]))
    churn = 0.0
    if obj.churn_usd_per_replica > 0:
        churn = float(obj.churn_usd_per_replica * np.sum(np.maximum(0.0, x - model.current)))
    penalty = float(sum(policy.penalty * max(0.0, v[col]) for policy, _, col in model.penalties))
    return {"compute": compute, "egress": egress, "latency": latency, "unmet": unmet, "churn": churn,
            "penalty": penalty}


def placement_of(model: MatrixModel, v: FloatArray) -> Placement:
    a = model.arrays
    x = np.round(v[model.block("x")]).astype(np.int64)
    replicas: dict[tuple[str, str], int] = {}
    for j in np.flatnonzero(x > 0).tolist():
        replicas[(a.models[a.pair_model[j]].name, a.pools[a.pair_pool[j]].name)] = int(x[j])
    nodes = {p.name: p.min_nodes for p in a.pools}
    for pi in np.flatnonzero(model.elastic_col >= 0).tolist():
        nodes[a.pools[pi].name] = round(float(v[model.elastic_col[pi]]))
    y = v[model.block("y")]
    routes = []
    for r in np.flatnonzero(y > 1e-7).tolist():
        d = int(a.route_dem[r])
        j = int(a.route_pair[r])
        routes.append(Route(a.models[a.dem_model[d]].name, a.location_names[a.dem_location[d]],
                            a.pools[a.pair_pool[j]].name, float(y[r]), float(a.route_latency[r])))
    routes.sort(key=lambda r: (r.model, r.demand_location, r.pool))
    return Placement(replicas=replicas, nodes=nodes, routes=tuple(routes), retired=frozenset(a.retired))


def polish(model: MatrixModel, v: FloatArray, time_limit: float, csc: Any = None) -> FloatArray | None:
    """Fix every integer column at its value and re-optimize the continuous ones (an LP over the
    routes of open pairs, unmet, churn and slack columns)."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0 = model.blocks["y"][0]
    cont = ~model.integer
    open_pairs = np.round(v[x0:x1]) > 0
    cont[y0:y0 + a.n_routes] &= open_pairs[a.route_pair]
    free = np.flatnonzero(cont)
    out = model.rounded(v)
    new, _ = solve_free(model, csc if csc is not None else model.A.tocsc(), out, free, time_limit=time_limit,
                        options={"presolve": "off"})
    if new is None:
        return None
    out[free] = new
    return out


def trim(model: MatrixModel, v: FloatArray, csc: Any = None) -> FloatArray:
    """``v`` less every replica, then every elastic node, that no row needs: one unit at a time,
    the costliest column first, each taken where every row it is in still holds without it. The
    routes stay as they are (so a replica they use stays too). The search ends with some such
    replicas where its time runs out before its one-model steps reach them (bench M at 5 s: a
    replica on another continent that serves no demand); what the rules need stays (a spot
    share's on-demand replica, a spread's failure domain, a gang, a minimum)."""
    csc = model.A.tocsc() if csc is None else csc
    out = model.rounded(v)
    act = csc @ out
    x0, x1 = model.blocks["x"]
    nodes = model.elastic_col[model.elastic_col >= 0]
    for cols in (x0 + np.flatnonzero(out[x0:x1] > 0.5), nodes):
        cols = cols[model.cost[cols] > 0]
        for col in cols[np.argsort(-model.cost[cols], kind="stable")]:
            rows = csc.indices[csc.indptr[col]:csc.indptr[col + 1]]
            coef = csc.data[csc.indptr[col]:csc.indptr[col + 1]]
            lo, hi = model.row_lo[rows], model.row_hi[rows]
            while out[col] - 1.0 >= model.lb[col] - 1e-9:
                after = act[rows] - coef
                slack = ROW_TOLERANCE * np.maximum(1.0, np.abs(after))
                if np.any(after < lo - slack) or np.any(after > hi + slack):
                    break
                out[col] -= 1.0
                act[rows] = after
    return out


def finish(model: MatrixModel, v: FloatArray, clock: Clock, csc: Any = None) -> FloatArray:
    """The plan's last steps: re-route with the replicas fixed (``polish``), drop what the new
    routes and the rules leave unneeded (``trim``), and again while a round pays and fits the time
    (the polish's routes are one optimum of many: each round frees a few more replicas; at L
    108, 12 and 4 USD/h). The first polish runs whatever the clock says, as before."""
    for rnd in range(TRIM_ROUNDS + 1):
        started = time.monotonic()
        polished = polish(model, v, time_limit=max(1.0, clock.left()), csc=csc)
        if polished is not None and model_value(model, polished) <= model_value(model, v) + 1e-6:
            v = polished
        if rnd == TRIM_ROUNDS or clock.left() < 2.0 * (time.monotonic() - started):
            break
        clock.begin("dropping the replicas no route or rule needs")
        trimmed = trim(model, v, csc)
        if model_value(model, trimmed) >= model_value(model, v) - 1e-6:
            break
        v = trimmed
        clock.mark("trim", f"value {model_value(model, v):.2f}")
    return v


def rens(model: MatrixModel, lp_values: FloatArray, time_limit: float, gap: float) -> FloatArray | None:
    """Replicas only on the LP's support and at most its values rounded up, the rest free: a small
    MIP whose answers are roundings of the LP (after Berthold's RENS; lower bounds are left at 0,
    as flooring a gang model split by the LP would leave nothing feasible)."""
    x0, x1 = model.blocks["x"]
    x = lp_values[x0:x1]
    support = x > 1e-6
    # the LP satisfies spread rules by fractions (big-M rows are weak): offer every model a
    # cheap pair in a few failure domains besides its support
    extra = np.zeros(len(x), dtype=bool)
    extra[domain_cover(model, per_replica_cost(model), 3)] = True
    extra &= ~support
    cols = np.flatnonzero(model.with_pairs(support | extra))
    lb = model.lb.copy()
    ub = model.ub.copy()
    ub[x0:x1] = np.where(support, np.minimum(model.ub[x0:x1], np.ceil(x - 1e-6)), model.ub[x0:x1])
    sol = solve(model, cols, integer=True, time_limit=time_limit, lb=lb[cols], ub=ub[cols], gap=gap)
    if sol.values is None:
        return None
    v = np.zeros(model.n_cols)
    v[cols] = sol.values
    return v


def model_value(model: MatrixModel, v: FloatArray) -> float:
    return float(model.cost @ v)


def optimize_large(
    fleet: Fleet,
    rules: Rules,
    current: Mapping[tuple[str, str], int] | None = None,
    progress: Callable[[str], None] | None = None,
    time_limit: float | None = None,
    forbid: frozenset[tuple[str, str]] = frozenset(),
    whole: bool = False,
    placed: Mapping[tuple[str, str], int] | None = None,
) -> LargeResult:
    """Place every model of ``fleet`` at least cost, scalably; see the module docstring.
    ``forbid`` keeps the given (model, pool) pairs empty; ``whole``: search the whole fleet in the
    whole time, as a first plan does (its moves priced as churn), even where what runs would make
    this a short re-plan around it. ``placed``: where replicas run now, where that differs from
    ``current`` (a rollout's replicas, which churn counts as started anew): the re-plan's mode, the
    pairs around what runs and its start are theirs."""
    current = dict(current or {})
    limit = float(time_limit if time_limit is not None else fleet.settings.solver.time_limit_seconds)
    clock = Clock(limit, progress or (lambda _m: None))
    clock.begin("finding eligible pools")
    arrays = build_arrays(fleet, rules)
    clock.mark("pairs", f"{arrays.n_pairs} pairs, {arrays.n_routes} routes")
    counts, index = np.diff(arrays.pair_ptr), arrays.model_index
    if stranded_minimum(fleet, arrays.retired, lambda m: int(counts[index[m]])) is not None:
        return LargeResult("INFEASIBLE", None, math.inf, -math.inf, clock.elapsed(), {})
    clock.begin(f"building the model: {arrays.n_pairs:,} eligible (model, pool) pairs")
    # cuts tighten the LP; a fleet planned without the LP gets the cheapest set, and a re-plan
    # (which starts from what runs, and searches little) none
    replan = not whole and choose_mode(arrays, arrays.current_vector(current if placed is None else placed)) == "replan"
    prices = None
    if replan and arrays.n_pairs > SMALL_PAIRS:
        # a re-plan's search only ever uses the pairs around what runs: its model holds those
        # alone, and its bound prices every pair from their columns
        columns = build_matrix(arrays, rules, current, columns_only=True, placed=placed)
        keep = replan_pairs(columns)
        prices = simple_prices(columns)
        model = build_matrix(arrays.restrict(keep), rules, current, cuts=False, placed=placed)
        where = f"{int(keep.sum())} of {arrays.n_pairs} pairs (around what runs): "
    else:
        model = build_matrix(arrays, rules, current, cuts=not replan, cut_levels=cut_levels(arrays.n_pairs),
                             placed=placed)
        where = ""
    _forbid(model, forbid)
    clock.mark("model", f"{where}{model.n_cols} columns, {model.n_rows} rows, {model.A.nnz} nonzeros")
    gap, workers = fleet.settings.solver.relative_gap, search_threads(fleet.settings.solver.workers)
    result = solve_model(model, clock, gap, workers=workers, prices=prices, mode=whole_mode(arrays) if whole else None)
    if replan and result.placement is None and result.status != "INFEASIBLE":
        # no plan around what runs (a pool lost under a required spread, a minimum that must
        # move): the whole route, whose LP finds a plan elsewhere or proves there is none. The
        # re-plan's "UNKNOWN" told whatif and plan to raise the time limit, after 1.8 s of 5 at M,
        # for a fleet no plan can hold (whatif named no conflict)
        clock.begin("no plan around what runs: planning the whole fleet")
        model = build_matrix(arrays, rules, current, cuts=True, cut_levels=cut_levels(arrays.n_pairs), placed=placed)
        _forbid(model, forbid)
        result = solve_model(model, clock, gap, workers=workers, mode=whole_mode(arrays))
    result.log = clock.log
    # the reasons pairs are out, worked out when asked for (explain, a plan's reasons)
    excluded = Exclusions(fleet, rules, dict(arrays.retired))
    if arrays.n_pairs <= CANDIDATES_PAIRS:
        result.candidates = ArrayCandidates(arrays, excluded)
    else:
        result.candidates = Candidates(retired=dict(arrays.retired), excluded=excluded)
    return result


def _forbid(model: MatrixModel, forbid: frozenset[tuple[str, str]]) -> None:
    """Keep the given (model, pool) pairs empty."""
    for m, p in forbid:
        j = model.arrays.find_pair(m, p)
        if j is not None:
            model.ub[model.blocks["x"][0] + j] = 0.0


def whole_mode(a: FleetArrays) -> str:
    """The route over the whole fleet: ``direct`` beyond LP_PAIRS, else ``lp``."""
    return "direct" if a.n_pairs > LP_PAIRS else "lp"


def choose_mode(a: FleetArrays, cur: FloatArray) -> str:
    """``replan`` when what runs now (``cur``, replicas per pair) covers most models; ``direct``
    beyond LP_PAIRS; else ``lp``. PLACER_MODE forces one (tests and benchmarks of the modes); another
    word is a KnobError naming it, as PLACER_OPTIMIZER's is (``PLACER_MODE=replann`` chose by size
    without a word, and a benchmark of one mode measured another)."""
    forced = env_choice("PLACER_MODE", ("lp", "direct", "replan"), "the mode by what runs and the fleet's size")
    if forced is not None:
        return forced
    active = np.diff(a.pair_ptr) > 0
    covered = np.zeros(len(a.models), dtype=bool)
    covered[a.pair_model[cur > 0]] = True
    if active.any() and covered[active].mean() >= REPLAN_SHARE and serves(a, cur) >= REPLAN_SERVES:
        return "replan"
    return whole_mode(a)


def serves(a: FleetArrays, cur: FloatArray) -> float:
    """The share of the fleet's demand that the replicas ``cur`` could serve, each model's replicas
    at their throughput where the pools still hold them (routes and SLOs aside); 1 without demand."""
    demand = np.bincount(a.dem_model, weights=a.dem_rate, minlength=len(a.models))
    total = float(demand.sum())
    if total <= 0:
        return 1.0
    held = np.minimum(cur, a.pair_max) * a.pair_thr
    capacity = np.bincount(a.pair_model, weights=held, minlength=len(a.models))
    return float(np.minimum(capacity, demand).sum()) / total


def search_threads(workers: int | None) -> int:
    """Threads for the one-model re-placements: Settings' solver.workers, else the cores this
    process may use; at most MAX_SEARCH_THREADS (the steps' Python share runs one at a time)."""
    return max(1, min(MAX_SEARCH_THREADS, workers or available_cores()))


def replan_pairs(model: MatrixModel) -> BoolArray:
    """The pairs a re-plan searches over: what runs now, the cheapest routes, pairs and failure
    domains of each model (``initial_pairs``), a fallback route per demand entry, and its
    cheapest routes to elastic pools with room for a replica now, where demand grown past the
    cheap pools goes (fixed pools' room is left out: headroom rules the arrays do not see may
    hold it). A model built with ``columns_only`` will do."""
    a = model.arrays
    cur = model.placed
    per_rate = per_rate_cost(model)
    keep: BoolArray = initial_pairs(model, np.flatnonzero(cur > 0)) | fallback_pairs(model, per_rate)
    if not a.n_routes:
        return keep
    used = np.bincount(a.pair_pool, weights=cur * a.pair_c, minlength=len(a.pools))
    room = a.pool_max_nodes * a.pool_per_node - used
    j = a.route_pair
    pool = a.pair_pool[j]
    fits = a.pool_elastic[pool] & (room[pool] >= REPLAN_FREE_REPLICAS * a.pair_c[j])
    for ok, k in ((fits, REPLAN_ROUTES), (fits & ~a.pool_spot[pool], REPLAN_ROUTES)):
        rs = np.flatnonzero(ok)
        keep[j[rs[cheapest_in_groups(per_rate[rs], a.route_dem[rs], k)]]] = True
    return keep


def price_pairs(model: MatrixModel, lp: LpResult, v: FloatArray, allowed: BoolArray, near: int) -> BoolArray:
    """The pairs a model's pricing MIP may use: its ``near`` pairs nearest to pricing out at the
    LP's duals (``lp`` has them), those the LP and the plan ``v`` use, within ``allowed``."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    assert lp.duals is not None
    out = np.zeros(a.n_pairs, dtype=bool)
    out[cheapest_in_groups(lp.duals.g_lp, a.pair_model, near)] = True
    out |= lp.values[x0:x1] > 1e-6
    out |= np.round(v[x0:x1]) > 0
    result: BoolArray = out & allowed
    return result


def pairs_at_prices(model: MatrixModel, rc: FloatArray, v: FloatArray, per_group: int) -> BoolArray:
    """The pairs a model's pricing MIP may use at reduced costs ``rc``, ranked by what a
    configuration pays at those prices, spot and on-demand pools apart (a spot cap makes
    configurations mix the two): per model, the ``per_group`` whose replicas alone serve all its
    demand at least cost (training and batch models: the cheapest replicas) and the 2 with the
    cheapest replica (where the last bit of demand goes); per demand entry, the ``per_group`` with
    the least cost per unit of rate and the ``per_group`` serving that entry alone at least cost;
    with those the plan ``v`` uses. Whole replicas are what the LP's nearest pairs miss: an entry
    served by one replica of a small pool, a model by a pool whose replicas cost more per unit of
    rate and fewer in all."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    y0 = model.blocks["y"][0]
    rx, ry = rc[x0:x1], rc[y0:y0 + a.n_routes]
    rate = a.dem_rate[a.route_dem]
    with np.errstate(divide="ignore", invalid="ignore"):
        thr = a.pair_thr[a.route_pair]
        per_rate = ry + rx[a.route_pair] / thr
        alone = np.ceil(rate / thr - 1e-9) * rx[a.route_pair] + rate * ry
        total = np.bincount(a.dem_model, weights=a.dem_rate, minlength=len(a.models))
        routed = np.bincount(a.route_pair, weights=rate * ry, minlength=a.n_pairs)
        whole = np.ceil(total[a.pair_model] / a.pair_thr - 1e-9) * rx + routed
    # a pair serves all of its model's demand only with a route from every entry
    entries = np.bincount(a.dem_model, minlength=len(a.models))
    serves_all = np.bincount(a.route_pair, minlength=a.n_pairs) == entries[a.pair_model]
    inference = entries[a.pair_model] > 0
    whole = np.where(inference, np.where(serves_all, whole, np.inf), rx)
    spot = a.pool_spot[a.pair_pool].astype(np.int64)
    by_model = a.pair_model * 2 + spot
    by_entry = a.route_dem * 2 + spot[a.route_pair]
    out = np.zeros(a.n_pairs, dtype=bool)
    for values, groups, k, of in ((whole, by_model, per_group, None), (rx, by_model, 2, None),
                                  (per_rate, by_entry, per_group, a.route_pair),
                                  (alone, by_entry, per_group, a.route_pair)):
        order = np.argsort(groups, kind="stable")  # pools within a location may not be spot-sorted
        got = order[cheapest_in_groups(values[order], groups[order], k)]
        out[got if of is None else of[got]] = True
    out |= np.round(v[x0:x1]) > 0
    return out


OVER_NEAREST, OVER_EVERY_PAIR, OVER_AT_PRICES = "the nearest pairs", "every pair", "the cheapest pairs at each round's prices"


@dataclass
class Pricing:
    """What ``price_configurations`` did."""

    priced: int = 0  # configurations added
    rounds: int = 0
    over: str = OVER_NEAREST  # the pairs of its rounds after the first: OVER_NEAREST, OVER_EVERY_PAIR or OVER_AT_PRICES
    master_lp: list[float] = field(default_factory=list)  # the master's LP before each round after the first
    # the Lagrangian bound of its first round over every pair (every model at the LP's duals;
    # ``bound.Lagrangian``: each model at what its pricing MIP proved); -inf when none ran, or the
    # model is restricted to some pairs
    bound: float = -math.inf
    bounded: bool = False  # whether that round ran
    by_highs: int = 0  # rounds HiGHS priced where the batch stalled (BATCH_STALL)


def price_configurations(model: MatrixModel, configs: Configurations, lp: LpResult, v: FloatArray,
                         allowed: BoolArray, until: float, workers: int, csr: Any, by_parts: bool,
                         tables: PairTables | None = None) -> Pricing:
    """Each model's least-cost configuration at the LP's duals, over its nearest pairs within
    ``allowed`` (``Configurations.add_priced``, from the plan ``v``); then more rounds, at prices
    halfway between the LP's and those of the master over what there is now (the master's own
    duals swing from round to round). When the window until ``until`` holds EVERY_PAIR_ROUNDS
    rounds over every pair of each model (``allowed`` or not: the master takes any configuration),
    those; else, when it holds as many over the pairs cheapest at each round's prices
    (``pairs_at_prices``), those; either until the master's LP falls by less than MASTER_STOP
    (column generation on the master), each round over the models the one before improved
    (``Priced.improved``) and every WHOLE_EVERY-th over all of them (partial pricing: where the
    last round improved none, or the master's LP stopped falling after a round over some, the
    next prices all; after one over all, pricing ends; where the batch prices, a round after which
    the master's LP fell less than BATCH_STALL is followed by one of HiGHS over every model, and
    pricing ends only once such a round stalls too). Else, while the window holds another
    round (SECOND_ROUND), one more over the nearest pairs, then a wider pass (PRICE_WIDE). By
    parts (a fleet too large for one master: no master LP), the first round and the wider pass.
    Over every pair, the first of those rounds prices every model at the LP's duals, and what its
    MIPs prove is a Lagrangian bound (``Pricing.bound``; ``tables``: the model's ``PairTables``,
    when the caller has them)."""
    assert lp.duals is not None
    began = time.monotonic()
    mode = "mip" if by_parts else pricing_mode(len(configs))
    if mode != "mip":
        # the batch's blocks' shapes, once a route (M 0.02 s, L 0.25 s, read at once since 2026-12-02;
        # one model at a time they took 0.35 s and 1.5 s), are no round's: counted in the
        # first, they made the rounds after it look slower than they are. At M the rounds over the
        # pairs cheapest at each round's prices then looked too slow for the window in 13 of 49 runs
        # (2026-12-02), which priced the nearest pairs twice instead: 9,050-9,085 USD/h, against
        # 9,014-9,074 (mean 9,030) with the rounds at prices; left out, those rounds ran in all 16
        configs.batch()
    started = time.monotonic()
    rc = linking_reduced_costs(model, lp.duals.pi, configs.blocks)
    near = price_pairs(model, lp, v, allowed, PRICE_NEAR)
    first = configs.add_priced(rc, near, v, until, workers, batched=not by_parts, pace=True)
    out = Pricing(first.added, 1)
    active, since_whole = first.improved, 0  # the models the last round improved; rounds since one over all
    last = time.monotonic() - started
    # a second round runs where the window holds the first again, the shapes counted in, as SECOND_ROUND
    # was measured (at L, left out, the second round ran more often; plans with it or without were
    # within the runs' spread, 36,953-37,199 USD/h over 14 runs)
    gate = time.monotonic() - began
    if DEBUG:
        debug(f"    pricing round 1 over {int(near.sum())} pairs (the nearest pairs at the LP's duals), "
              f"{configs.n_models} models: +{first.added} in {last:.1f}s")
    n_pairs, n_near = model.arrays.n_pairs, max(1, int(near.sum()))

    def holds(rounds: float, pairs: int, first_of_them: float | None = None) -> bool:
        """Whether the window left holds this many rounds over this many pairs, a round's time
        guessed from the first's by the square root of the ratio of pairs (the first of them
        ``first_of_them`` seconds, where given)"""
        each = last * math.sqrt(pairs / n_near)
        return rounds <= 0 or until - time.monotonic() >= (rounds - 1) * each + (
            each if first_of_them is None else first_of_them)

    # the first round over every pair is exact (HiGHS on every model, for its bound): at HiGHS' own
    # pace, where the batch priced the first round (10-50 times faster a block), and over every pair
    # in proportion to the pairs (an upper guess: at M 3.4 s, where it took 2.8-2.9 s). Guessed at the
    # batch's pace (the shapes left out, above), M at 5 s chose it where its window held 0.9 s, and the
    # round stopped unfinished at the window's end (one run: +135 configurations in 1.0 s, 9,074.28
    # USD/h)
    exact = last
    if first.mip_models:
        exact = max(last, first.mip_seconds / first.mip_models * configs.n_models / max(1, workers))
    if not by_parts and holds(EVERY_PAIR_ROUNDS, n_pairs, exact * n_pairs / n_near):
        out.over = OVER_EVERY_PAIR
    elif not by_parts and holds(AT_PRICES_ROUNDS, int(pairs_at_prices(model, rc, v, PRICED_PAIRS).sum())):
        out.over = OVER_AT_PRICES
    most = 2 if out.over == OVER_NEAREST else MAX_ROUNDS
    by_highs = False  # whether the last round was HiGHS' on every model
    while not by_parts and out.rounds < most and until - time.monotonic() > SECOND_ROUND * gate:
        t_round = time.monotonic()
        got = master_duals(model, configs, until - time.monotonic(), csr)
        if got is None:
            break
        last_lp = out.master_lp[-1] if out.master_lp else math.inf
        fell = last_lp - got[0]
        stalled = bool(out.master_lp) and fell < MASTER_STOP * abs(last_lp)
        # the batch's rounds stopped paying: HiGHS prices the next, every model (once a stall: a round
        # by HiGHS that stalls too ends the pricing, as one over every model does)
        highs_round = mode == "batch" and not by_highs and bool(out.master_lp) and fell < BATCH_STALL * abs(last_lp)
        if stalled and since_whole == 0 and not highs_round:
            break
        out.master_lp.append(got[0])
        # the first round over every pair prices every model at the LP's duals again, now over all
        # its pairs: a Lagrangian bound at the multipliers that give the best one known (the
        # master's, smoothed, gave 8,482 at M against the LP's 8,738 and 8,902 at the LP's duals)
        bounding = out.over == OVER_EVERY_PAIR and not out.bounded and model.arrays.parent is None
        pi = lp.duals.pi if bounding else SMOOTHING * lp.duals.pi + (1 - SMOOTHING) * got[1]
        rc_round = rc if bounding else linking_reduced_costs(model, pi, configs.blocks)
        pairs = (pairs_at_prices(model, rc_round, v, PRICED_PAIRS) if out.over == OVER_AT_PRICES
                 else np.ones(n_pairs, dtype=bool) if out.over == OVER_EVERY_PAIR else near)
        # every model again when the models the last rounds improved have stopped paying
        whole = (bounding or highs_round or out.over == OVER_NEAREST or stalled or not len(active)
                 or since_whole + 1 >= WHOLE_EVERY)
        n_models = configs.n_models if whole else len(active)
        new = configs.add_priced(rc_round, pairs, v, until, workers, models=None if whole else active,
                                 exact=bounding, batched=not highs_round)
        by_highs = highs_round or bounding
        out.by_highs += highs_round
        if bounding:
            # each model priced over all its pairs: what its MIP proved bounds its own problem in
            # L(pi), so L(pi) bounds the plan (a restricted model's would bound it alone)
            out.bound = Lagrangian.at(model, pi, configs.blocks, tables, rc=rc_round).total(new.proven)
            out.bounded = True
        active, since_whole = new.improved, 0 if whole else since_whole + 1
        out.priced, out.rounds, last = out.priced + new.added, out.rounds + 1, time.monotonic() - t_round
        gate = last
        if DEBUG:
            debug(f"    pricing round {out.rounds} over {int(pairs.sum())} pairs ({out.over}), "
                  f"{n_models} models{' by HiGHS' if highs_round else ''}: master LP {got[0]:.2f}, "
                  f"+{new.added} in {last:.1f}s")
        if not new.added and whole:
            break
    if out.over == OVER_NEAREST and until - time.monotonic() > 0.1:
        wide = configs.add_priced(rc, price_pairs(model, lp, v, allowed, PRICE_WIDE), v, until, workers,
                                  batched=not by_parts).added
        out.priced += wide
        if DEBUG:
            debug(f"    pricing over the {PRICE_WIDE} nearest pairs a model: +{wide}")
    return out


def model_parts(model: MatrixModel, v: FloatArray, size: int) -> list[IntArray]:
    """Every model with pairs, in parts of ``size``: each model with those whose pool with most of
    their GPUs in the plan ``v`` (a model without replicas: its first pair's) is near its own
    (pools come location by location)."""
    a = model.arrays
    x0, x1 = model.blocks["x"]
    gpus = np.round(v[x0:x1]) * a.pair_c
    order = np.lexsort((-gpus, a.pair_model))
    pm = a.pair_model[order]
    first = order[np.r_[True, pm[1:] != pm[:-1]]] if len(order) else order
    home = np.full(len(a.models), -1, dtype=np.int64)
    home[a.pair_model[first]] = a.pair_pool[first]
    has = np.flatnonzero(home >= 0)
    ranked = has[np.argsort(home[has], kind="stable")]
    return [ranked[i:i + size] for i in range(0, len(ranked), size)]


def _recombined(model: MatrixModel, configs: Configurations | None, v: FloatArray, clock: Clock, reserve: float,
                csr: Any, lp: LpResult | None = None, allowed: BoolArray | None = None,
                workers: int = 1, tables: PairTables | None = None) -> tuple[FloatArray, float]:
    """``v``, or the better plan ``recombine`` puts together from the configurations seen so far;
    given the LP ``lp``, then again with the LP's consolidated from that plan and each model's
    configuration priced at the LP's duals (over ``allowed`` pairs, on ``workers`` threads): when
    the slower master finds nothing better in its time, the quick one's plan stands. Beyond
    RECOMBINE_PAIRS, each master runs part by part (``model_parts``), and the LP's fractions are
    gathered one way only. With the plan, the bound its pricing proved (-inf: none; ``tables``:
    the model's ``PairTables``, when the caller has them)."""
    if configs is None:
        return v, -math.inf
    share = RECOMBINE_SHARE_LP if lp is not None else RECOMBINE_SHARE
    deadline = time.monotonic() + min(clock.left() - reserve, share * clock.limit)

    by_parts = model.arrays.n_pairs > RECOMBINE_PAIRS

    def once(v: FloatArray, left: float, note: str = "") -> FloatArray:
        if left < 0.1:  # the steps before took its time (a loaded machine): said, not silent
            clock.mark("recombine", f"no time left for the master over {len(configs)} configurations{note}")
            return v
        if not by_parts:
            clock.begin("recombining the configurations the search saw")
            r = recombine(model, configs, v, time_limit=left, csr=csr, workers=workers)
            better = r.values if r.values is not None else v
            again = " (again without the start)" if r.retried else ""
            clock.mark("recombine", f"{r.configurations} configurations{note}, {r.status}{again}, "
                                    f"{r.moved} models moved, value {model_value(model, better):.2f}")
            return better
        # a fleet too large for one master: a master per part, the others as they are
        end = time.monotonic() + left
        parts = model_parts(model, v, PART_MODELS)
        moved = done = 0
        for i, part in enumerate(parts):
            share = (end - time.monotonic()) / (len(parts) - i)
            if share < 0.1:
                break
            clock.begin(f"recombining the configurations the search saw: part {i + 1} of {len(parts)}")
            r = recombine(model, configs, v, time_limit=share, csr=csr, workers=workers, models=part)
            done += 1
            if r.values is not None:
                v, moved = r.values, moved + r.moved
            if DEBUG:
                debug(f"    part {i}: {len(part)} models, {r.configurations} configurations, {r.status}, "
                      f"{r.moved} moved, {r.seconds:.1f}s, value {model_value(model, v):.2f}")
        clock.mark("recombine", f"{done} of {len(parts)} parts{note}, {moved} models moved, "
                                f"value {model_value(model, v):.2f}")
        return v

    first = min(deadline - time.monotonic(), RECOMBINE_SHARE * clock.limit)
    if first < 0.1:
        return v, -math.inf
    v = once(v, first)
    if lp is None or deadline - time.monotonic() < 0.2:
        return v, -math.inf
    # a master over more configurations needs more time: every way of gathering the LP's fractions
    # when it has the time (M and L), the first alone when it has not
    ways = ONTO if deadline - time.monotonic() >= ALL_ONTO_SECONDS and not by_parts else ONTO[:1]
    until = time.monotonic() + CONSOLIDATE_SHARE * (deadline - time.monotonic())
    clock.begin("gathering the LP's fractions of replicas into configurations")
    added = sum(configs.add_replicas(consolidated(model, lp.values, v, onto), v, time_limit=until - time.monotonic())
                for onto in ways)
    t_price = time.monotonic()
    got = Pricing()
    if lp.duals is not None and allowed is not None:
        until = time.monotonic() + PRICE_SHARE * (deadline - time.monotonic())
        clock.begin("pricing configurations at the LP's duals")
        got = price_configurations(model, configs, lp, v, allowed, until, workers, csr, by_parts, tables)
    proved = f", bound {got.bound:.2f}" if math.isfinite(got.bound) else ""
    return once(v, deadline - time.monotonic(), f" (+{added} from the LP, +{got.priced} priced in {got.rounds} "
                                               f"round{'s' if got.rounds != 1 else ''}"
                                               f"{'' if got.over == OVER_NEAREST else ' over ' + got.over}"
                                               f"{f' ({got.by_highs} by HiGHS)' if got.by_highs else ''} "
                                               f"in {time.monotonic() - t_price:.1f}s{proved})"), got.bound


def solve_model(model: MatrixModel, clock: Clock, gap: float, workers: int = 1,
                prices: Prices | None = None, mode: str | None = None) -> LargeResult:
    """Modes: ``lp`` (the LP, rounded); ``replan`` (from the replicas running now, when they cover
    most models: a re-plan changes little, and starts from what runs); ``direct`` (fleets whose
    LP would not fit the time: from the greedy plan). The last two take their bound from
    ``lp.simple_duals`` unless the LP runs too; ``prices``: theirs, set on the full arrays of a
    model restricted to some pairs (whose bound then holds for the whole fleet); ``mode``: this one,
    not ``choose_mode``'s."""
    clock.begin("a first plan to start from")
    idle = IdleCores()  # whether the LP would find the search's threads a core each
    a = model.arrays
    x0, x1 = model.blocks["x"]
    tables = PairTables.build(model)
    cur = model.placed  # where replicas run now, a rollout's too: what a re-plan starts from
    cur_pairs = np.flatnonzero(cur > 0)
    mode = mode or choose_mode(a, cur)
    reserve = 0.3 + 0.02 * clock.limit
    if mode == "replan":
        gx = np.minimum(cur, model.ub[x0:x1]).astype(np.int64)
    else:
        gx, _ = greedy(model)
    seed = initial_pairs(model, cur_pairs) | (gx > 0)
    clock.mark("seed", f"{mode}: {int(seed.sum())} pairs")

    lp = None
    if mode == "lp":
        threads = workers if workers > 1 and int(seed.sum()) >= PARALLEL_LP_PAIRS and idle.hold(workers) else 1
        share = LP_SHARE_PARALLEL if threads > 1 else LP_SHARE
        clock.begin(f"the LP by column generation, from {int(seed.sum()):,} pairs")
        lp = column_generation(model, tables, seed, deadline=time.monotonic() + max(0.5, share * clock.left()),
                               view=Master(model), stop_gap=LP_STOP_GAP, threads=threads)
        if lp.duals is None and lp.status == "INFEASIBLE":
            return LargeResult(lp.status, None, math.inf, -math.inf, clock.elapsed(), {})
        if lp.duals is None:  # its first round did not finish in time (a loaded machine): plan as direct mode
            clock.mark("lp", f"{lp.status}: no LP in time; planning from the greedy plan")
            lp = None
    if lp is not None and lp.duals is not None:
        bound = lp.duals.bound
        if lp.status != "OPTIMAL":
            clock.begin("the LP stopped early: bounding the cost between its duals and simple ones")
            # stopped early: its duals may bound far less than the simple ones, and points between
            # both bound more than either (a restricted model's bound must hold for the whole
            # fleet: the simple prices alone, set on the full arrays, do)
            simple = simple_duals(model, prices)
            serve = Master.serve_rows(model)
            bound = max(bound, lagrangian(model, tables, simple, serve, integer=True, with_lp=False).bound
                        if a.parent is not None else
                        bound_on_line(model, tables, simple, lp.duals.pi, serve,
                                      deadline=time.monotonic() + LINE_SHARE * clock.limit,
                                      end_bound=lp.duals.bound))
        clock.mark("lp", f"{lp.status} value {lp.value:.2f} bound {bound:.2f} rounds {lp.iterations} "
                         f"master {int(lp.master.sum())}{f' (up to {threads} threads)' if threads > 1 else ''}")
        start = lp.values
    else:
        clock.begin("bounding the cost by simple duals")
        bound = lagrangian(model, tables, simple_duals(model, prices), Master.serve_rows(model), integer=True,
                           with_lp=False).bound
        start = pseudo_lp(model, gx.astype(float))
        clock.mark("bound", f"simple duals: {bound:.2f}")

    # the pairs the MIPs may use: all of them on small fleets; else the LP's master or the seed,
    # the pairs nearest to pricing out, what the greedy plan and the current state use, and a
    # fallback route per demand entry on an elastic on-demand pool
    if a.n_pairs <= EVERY_PAIR or a.parent is not None:  # a restricted model holds candidates only
        cand = np.ones(a.n_pairs, dtype=bool)
    else:
        cand = seed.copy()
        cand[cur_pairs] = True
        if lp is not None and lp.duals is not None:
            cand |= lp.master
            near = np.lexsort((lp.duals.g_lp, a.pair_model))
            pm = a.pair_model[near]
            rank = np.arange(len(near)) - np.searchsorted(pm, pm, side="left")
            cand[near[rank < near_pairs()]] = True
        cand |= fallback_pairs(model)

    # a first plan: the start rounded down, the rest covered greedily, then completed exactly
    clock.begin("rounding to whole replicas")
    hood = Neighbourhoods(model, tables, cand)
    x_int = round_and_cover(model, start, cand, csr=hood.csr)
    clock.mark("round", f"{int(x_int.sum())} replicas")
    # completing is the one way to a plan: it may take what the search would have had, and some
    # grace beyond the limit (a plan a little late beats no plan)
    clock.begin("completing the first plan")
    v = complete(model, hood, x_int, time_limit=max(0.5, 0.3 * clock.left()),
                 deadline=time.monotonic() + max(0.5, 0.85 * (clock.left() - reserve)) + GRACE * clock.limit)
    clock.mark("complete", "no plan" if v is None else f"value {model_value(model, v):.2f}")
    if mode == "replan":
        # what runs, kept as it is (the rounding drops the replicas its greedy routes leave idle, and
        # covers again: at L, with no change to the fleet, 33,081 USD/h against 31,640 for what runs
        # and a search that then moved 362 replicas and ended 518 USD/h dearer than not moving)
        clock.begin("completing what runs, kept as it is")
        kept = complete(model, hood, gx, time_limit=max(0.5, 0.3 * clock.left()),
                        deadline=time.monotonic() + max(0.5, 0.5 * (clock.left() - reserve)))
        if kept is not None and (v is None or model_value(model, kept) < model_value(model, v)):
            v = kept
        clock.mark("keep", "no plan" if kept is None else f"value {model_value(model, kept):.2f}")
        if kept is not None:
            # what runs, kept, with more replicas where the new demand needs them (bench M, four 5%
            # changes in a row, each re-planned from the last: 21-63 USD/h a step below the rounding
            # above; L, three: 219-272)
            clock.begin("covering the demand what runs leaves unmet")
            more = covered(model, hood, kept, cand, time_limit=max(0.5, 0.3 * clock.left()),
                           deadline=time.monotonic() + max(0.5, 0.5 * (clock.left() - reserve)))
            if more is not None and (v is None or model_value(model, more) < model_value(model, v)):
                v = more
            clock.mark("cover", "no plan" if more is None else f"value {model_value(model, more):.2f}")
    if v is None:
        clock.begin("constructing a plan, the largest models first")
        order = np.argsort(-model_size(model), kind="stable")
        v = construct(model, hood, order, deadline=time.monotonic() + max(0.5, 0.5 * clock.left()))
        clock.mark("construct", "no plan" if v is None else f"value {model_value(model, v):.2f}")
    if v is None and lp is not None:
        clock.begin("a plan around the LP's (RENS)")
        v = rens(model, lp.values, time_limit=max(0.3, 0.5 * clock.left()), gap=gap)
        clock.mark("rens", "no plan" if v is None else f"value {model_value(model, v):.2f}")
    if v is None:
        return LargeResult("UNKNOWN", None, math.inf, bound + model.unserved_usd, clock.elapsed(), {})

    # small models: HiGHS on the whole model from this plan, for a better plan and its bound
    # (without the rules' cuts: HiGHS' own search finds S's optimum in 6 s without them, and not in
    # 9 s with them; the LP needs them, the MIP does not)
    if model.n_cols <= FULL_MIP_COLS and mode != "replan" and clock.left() > reserve + 0.5:
        clock.begin(f"HiGHS on the whole model: {model.n_cols:,} columns")
        sol = solve(model, np.arange(model.n_cols), integer=True, start=v, gap=gap,
                    rows=np.setdiff1d(np.arange(model.n_rows), model.cut_rows),
                    time_limit=max(0.3, FULL_MIP_SHARE * (clock.left() - reserve)), isolated=True)
        if sol.values is not None and model_value(model, sol.values) < model_value(model, v) - 1e-9:
            v = sol.values
        if math.isfinite(sol.bound):
            bound = max(bound, min(sol.bound, model_value(model, v)))
        clock.mark("full mip", f"{sol.status} value {model_value(model, v):.2f} bound {sol.bound:.2f}")

    # the configurations of each model the search comes across, for recombining (not in a re-plan,
    # whose search is short and moves few models), with the LP's consolidated
    # (``recombine.consolidated``), which the master needs more time to fit together
    configs = None
    if mode != "replan":
        configs = Configurations(model, csr=hood.csr, csc=hood.csc)
        configs.add_plan(v)
    lp_configs = lp if configs is not None else None  # the LP whose configurations the recombination gets
    # the first plan leaves most models paying for a fraction of a replica in each pool they use:
    # re-place them one at a time, the costliest first
    budget = (SWEEP_SHARE_LP if lp_configs is not None else SWEEP_SHARE) * (clock.left() - reserve)
    if mode == "replan":
        budget = min(budget, max(REPLAN_SEARCH_LEAST * clock.limit, REPLAN_TIME * clock.limit - clock.elapsed()))
    record = None if configs is None else configs.add_step
    clock.begin("re-placing models one at a time, the costliest first")
    v, st = sweep(model, hood, v, deadline=time.monotonic() + max(0.0, budget), workers=workers, record=record)
    clock.mark("sweep", f"{st.steps} models, {st.improved} improved on {workers} threads, "
                        f"value {model_value(model, v):.2f}")
    recombined, priced_bound = _recombined(model, configs, v, clock, reserve, hood.csr, lp_configs, cand, workers,
                                           tables)
    bound = max(bound, priced_bound)
    if recombined is not v and clock.left() - reserve > 0.5:
        # the recombination moved many models at once: around them, one-model steps pay again
        clock.begin("re-placing the models the recombination moved")
        v, st = sweep(model, hood, recombined, deadline=time.monotonic() + RESWEEP_SHARE * (clock.left() - reserve),
                      workers=workers)
        clock.mark("resweep", f"{st.steps} models, {st.improved} improved, value {model_value(model, v):.2f}")
    else:
        v = recombined

    # improve by neighbourhood search until the time is up, the gap is closed, or steps stop paying
    target = bound

    def done(value: float) -> bool:
        return value - target <= gap * max(1.0, abs(value))

    patience = REPLAN_PATIENCE if mode == "replan" else PATIENCE
    # where HiGHS searched the whole model, its plan leaves little to trim, and the search its time
    # (S: 0.55 USD/h dearer with the share kept; at M and L trim drops what the search left)
    budget = clock.left() - reserve - (TRIM_SHARE * clock.limit if model.n_cols > FULL_MIP_COLS else 0.0)
    if mode == "replan":  # a re-plan moves little: a short search around what runs
        budget = min(budget, REPLAN_TIME * clock.limit - clock.elapsed())
    clock.begin("neighbourhood search")
    v, st = improve(model, hood, v, deadline=time.monotonic() + max(0.0, budget), stop=done, patience=patience,
                    min_gain=1e-4 if mode == "replan" else 1e-5)
    clock.mark("lns", f"{st.steps} steps, {st.improved} improved, value {model_value(model, v):.2f}")
    clock.begin("polishing the plan")
    v = finish(model, v, clock, hood.csc)
    terms = objective_terms(model, v)
    objective = sum(terms.values())
    # the bound so far is the model's, without the demand no plan serves; the gap that decides
    # OPTIMAL is the model's too, not one the constant widens
    unserved = model.unserved_usd
    bound = min(bound + unserved, objective)
    clock.mark("done", f"objective {objective:.2f} bound {bound:.2f}")
    optimal = objective - bound <= gap * max(1.0, abs(objective - unserved))
    status = "OPTIMAL" if optimal else "FEASIBLE"
    return LargeResult(status, placement_of(model, v), objective, bound, clock.elapsed(), terms,
                       stats=dict(clock.marks), values=v, note=REPLAN_NOTE if mode == "replan" and lp is None else "",
                       replan=mode == "replan")
