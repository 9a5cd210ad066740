"""Best-of-N selection on small synthetic pools whose expected accuracies are computed by hand."""

from __future__ import annotations

import random

import pytest

from codescaler.errors import InputError
from codescaler.rerank import CandidateSignals, Pool, Settings, Strategy, draw, evaluate, pools_from, select


def cand(i: int, correct: bool, reward: float | None = None, visible: int | None = None,
         generated: set[str] | None = None, model_s: float = 0.0, exec_s: float = 0.0,
         all_visible: bool | None = None) -> CandidateSignals:
    return CandidateSignals(candidate_id=f"c{i}", correct=correct, reward=reward, visible_passed=visible,
                            visible_all=all_visible,
                            generated_passed=frozenset(generated) if generated is not None else None,
                            model_seconds=model_s, exec_wall_seconds=exec_s, exec_cpu_seconds=exec_s / 2,
                            generated_wall_seconds=10 * exec_s, generated_cpu_seconds=5 * exec_s)


def test_rm_tie_counts_the_expected_value_over_the_tied_candidates() -> None:
    cands = [cand(0, True, reward=2.0), cand(1, False, reward=2.0), cand(2, True, reward=1.0)]
    sel = select(Strategy.RM, cands)
    assert sel.expected_correct == pytest.approx(0.5)
    assert sel.tied == 2
    # order of the tie does not matter
    assert select(Strategy.RM, list(reversed(cands))).expected_correct == pytest.approx(0.5)


def test_tests_random_and_oracle_on_one_draw() -> None:
    cands = [cand(0, True, visible=3), cand(1, False, visible=3), cand(2, False, visible=1), cand(3, True, visible=0)]
    assert select(Strategy.TESTS, cands).expected_correct == pytest.approx(0.5)
    assert select(Strategy.RANDOM, cands).expected_correct == pytest.approx(0.5)
    assert select(Strategy.ORACLE, cands).expected_correct == 1.0
    none_right = [cand(0, False, visible=1), cand(1, False, visible=0)]
    assert select(Strategy.ORACLE, none_right).expected_correct == 0.0


def test_tests_plus_rm_uses_the_reward_only_among_the_best_on_tests() -> None:
    cands = [cand(0, False, reward=0.1, visible=2), cand(1, True, reward=0.9, visible=2),
             cand(2, False, reward=5.0, visible=1)]
    sel = select(Strategy.TESTS_RM, cands)
    assert sel.expected_correct == 1.0
    assert (sel.scored, sel.executed) == (3, 3)


def test_logprob_picks_the_most_likely_program_and_counts_every_candidate_the_lm_scored() -> None:
    from dataclasses import replace

    cands = [replace(cand(0, False), logprob=-0.9, logprob_seconds=0.5),
             replace(cand(1, True), logprob=-0.2, logprob_seconds=0.5),
             replace(cand(2, True), logprob=None)]            # no valid code: ranks last, cost nothing
    sel = select(Strategy.LOGPROB, cands)
    assert sel.expected_correct == 1.0 and sel.tied == 1
    assert (sel.scored, sel.executed, sel.model_seconds) == (3, 0, pytest.approx(1.0))


def test_hybrid_executes_only_the_top_k_by_reward_and_reports_that_cost() -> None:
    cands = [cand(0, False, reward=5, visible=0, model_s=1.0, exec_s=0.1),
             cand(1, False, reward=4, visible=1, model_s=1.0, exec_s=0.2),
             cand(2, True, reward=3, visible=2, model_s=1.0, exec_s=0.4),
             cand(3, True, reward=2, visible=2, model_s=1.0, exec_s=0.8)]
    k2 = select(Strategy.HYBRID, cands, top_k=2)
    assert k2.expected_correct == 0.0  # the correct ones were never executed
    assert (k2.scored, k2.executed) == (4, 2)
    assert k2.model_seconds == pytest.approx(4.0)
    assert k2.exec_wall_seconds == pytest.approx(0.3)
    assert k2.exec_cpu_seconds == pytest.approx(0.15)
    k3 = select(Strategy.HYBRID, cands, top_k=3)
    assert k3.expected_correct == 1.0
    assert k3.executed == 3 and k3.exec_wall_seconds == pytest.approx(0.7)
    assert select(Strategy.HYBRID, cands, top_k=10).executed == 4


def test_cascade_stops_at_the_first_candidate_in_rm_order_that_passes_all_visible_tests() -> None:
    cands = [cand(0, True, reward=1, visible=2, all_visible=True, exec_s=0.8),
             cand(1, False, reward=5, visible=1, all_visible=False, exec_s=0.1),
             cand(2, False, reward=3, visible=2, all_visible=True, exec_s=0.2),   # passes the examples only
             cand(3, True, reward=4, visible=0, all_visible=False, exec_s=0.4)]
    sel = select(Strategy.CASCADE, cands)
    # RM order c1 (fails), c3 (fails), c2 (passes all: taken, although it is wrong)
    assert (sel.expected_correct, sel.tied, sel.scored, sel.executed) == (0.0, 1, 4, 3)
    assert sel.exec_wall_seconds == pytest.approx(0.7)
    # the same pick as hybrid with top_k = the executions cascade needed, at no higher cost
    hybrid = select(Strategy.HYBRID, cands, top_k=3)
    assert (hybrid.expected_correct, hybrid.executed) == (sel.expected_correct, sel.executed)


def test_cascade_cap_falls_back_to_most_passed_then_reward_over_what_ran() -> None:
    cands = [cand(0, False, reward=5, visible=1, all_visible=False, exec_s=0.1),
             cand(1, True, reward=4, visible=2, all_visible=False, exec_s=0.1),
             cand(2, False, reward=3, visible=2, all_visible=False, exec_s=0.1),
             cand(3, True, reward=2, visible=3, all_visible=True, exec_s=0.1)]
    capped = select(Strategy.CASCADE, cands, cascade_max=3)
    assert (capped.expected_correct, capped.executed) == (1.0, 3)  # c1: 2 passed, higher reward than c2
    # nobody passes all within the cap: c0..c2 ran, c1 and c2 tie on tests, the reward picks c1
    uncapped = select(Strategy.CASCADE, cands)
    assert (uncapped.expected_correct, uncapped.executed) == (1.0, 4)  # c3 passes all
    assert uncapped.expected_correct == select(Strategy.TESTS_RM, cands).expected_correct
    with pytest.raises(InputError, match="cascade_max"):
        select(Strategy.CASCADE, cands, cascade_max=0)
    with pytest.raises(InputError, match="c0.*all visible tests"):
        select(Strategy.CASCADE, [cand(0, True, reward=1.0, visible=1)])


def test_cascade_costs_adapt_per_problem_in_evaluate() -> None:
    easy = Pool("easy", tuple(cand(i, True, reward=10 - i, visible=1, all_visible=True, exec_s=0.5)
                              for i in range(4)), has_visible_tests=True)
    hard = Pool("hard", tuple(cand(i, False, reward=10 - i, visible=0, all_visible=False, exec_s=0.5)
                              for i in range(4)), has_visible_tests=True)
    settings = Settings(n_values=(4,), strategies=(Strategy.CASCADE,), seeds=3, cascade_max=3)
    (res,) = evaluate([easy, hard], settings)
    assert res.executed_per_problem == pytest.approx((1 + 3) / 2)
    assert res.exec_seconds_per_problem == pytest.approx(0.5 * 2)
    assert res.pass_at_1 == pytest.approx(0.5)


def test_generated_tests_pick_the_cluster_with_most_candidates_times_tests() -> None:
    cands = [cand(0, True, generated={"t1", "t2"}), cand(1, True, generated={"t2", "t1"}),
             cand(2, False, generated={"t1", "t2"}),           # cluster A: 3 x 2 = 6
             cand(3, False, generated={"t1", "t2", "t3"}),     # cluster B: 1 x 3 = 3
             cand(4, True, generated=set()), cand(5, True, generated=set())]  # cluster C: 0
    sel = select(Strategy.GENERATED_TESTS, cands, generation_seconds=7.0)
    assert sel.expected_correct == pytest.approx(2 / 3)
    assert sel.tied == 3
    assert sel.executed == 6 and sel.model_seconds == 7.0


def test_generated_tests_tied_clusters_are_pooled() -> None:
    cands = [cand(0, True, generated={"a"}), cand(1, True, generated={"a"}),
             cand(2, False, generated={"b"}), cand(3, False, generated={"b"})]
    sel = select(Strategy.GENERATED_TESTS, cands)
    assert sel.expected_correct == pytest.approx(0.5)
    assert sel.tied == 4


def test_rm_strategy_without_rewards_says_which_candidate() -> None:
    with pytest.raises(InputError, match="c1.*no RM reward"):
        select(Strategy.RM, [cand(0, True, reward=1.0), cand(1, False)])


def test_draws_follow_the_documented_seeding_and_are_nested_across_n() -> None:
    pool = Pool("HumanEval/7", tuple(cand(i, i % 3 == 0) for i in range(20)))
    order = list(range(20))
    random.Random("5:HumanEval/7").shuffle(order)
    assert [c.candidate_id for c in draw(pool, 8, 5)] == [f"c{i}" for i in order[:8]]
    assert draw(pool, 4, 5) == draw(pool, 8, 5)[:4]
    assert draw(pool, 8, 5) != draw(pool, 8, 6)


def _pools() -> list[Pool]:
    rng = random.Random(0)
    pools = []
    for t in range(6):
        cands = tuple(cand(i, rng.random() < 0.4, reward=rng.random(), visible=rng.randint(0, 3),
                           model_s=0.5, exec_s=0.01) for i in range(12))
        pools.append(Pool(f"task/{t}", cands, has_visible_tests=True))
    return pools


def test_evaluation_is_deterministic_under_seeds_and_changes_with_them() -> None:
    settings = Settings(n_values=(2, 4), strategies=(Strategy.RANDOM, Strategy.RM, Strategy.TESTS), seeds=5)
    first, again = evaluate(_pools(), settings), evaluate(_pools(), settings)
    assert first == again
    other = evaluate(_pools(), Settings(n_values=(2, 4), strategies=(Strategy.RANDOM,), seeds=5, base_seed=100))
    assert other[0].per_seed != first[0].per_seed
    assert [(r.strategy, r.n) for r in first] == [(s, n) for s in settings.strategies for n in (2, 4)]


def test_full_pool_draws_give_the_mean_pass_rate_and_zero_std() -> None:
    pools = _pools()
    settings = Settings(n_values=(12,), strategies=(Strategy.RANDOM, Strategy.ORACLE), seeds=4)
    rand, oracle = evaluate(pools, settings)
    expected = sum(sum(c.correct for c in p.candidates) / 12 for p in pools) / len(pools)
    assert rand.pass_at_1 == pytest.approx(expected)
    assert rand.std == 0.0
    assert oracle.pass_at_1 == pytest.approx(sum(any(c.correct for c in p.candidates) for p in pools) / 6)
    assert rand.seconds_per_problem == 0.0


def test_costs_are_summed_over_the_candidates_each_strategy_needed() -> None:
    settings = Settings(n_values=(4,), strategies=(Strategy.RM, Strategy.TESTS, Strategy.HYBRID), seeds=3, top_k=3)
    rm, tests, hybrid = evaluate(_pools(), settings)
    assert rm.model_seconds_per_problem == pytest.approx(2.0) and rm.exec_seconds_per_problem == 0.0
    assert tests.exec_seconds_per_problem == pytest.approx(0.04) and tests.model_seconds_per_problem == 0.0
    assert hybrid.exec_seconds_per_problem == pytest.approx(0.03)
    assert hybrid.seconds_per_problem == pytest.approx(2.03)
    assert (hybrid.scored_per_problem, hybrid.executed_per_problem) == (4.0, 3.0)


def test_fewer_candidates_than_n_uses_all_of_them_and_says_so() -> None:
    pools = [Pool("a", (cand(0, True), cand(1, False), cand(2, False))),
             Pool("b", tuple(cand(i, True) for i in range(10)))]
    (res,) = evaluate(pools, Settings(n_values=(8,), strategies=(Strategy.RANDOM,), seeds=2))
    assert res.n_short == 1
    assert res.mean_drawn == pytest.approx((3 + 8) / 2)
    assert res.pass_at_1 == pytest.approx((1 / 3 + 1.0) / 2)


def test_problems_without_visible_tests_are_skipped_and_counted() -> None:
    with_tests = Pool("a", (cand(0, True, visible=1), cand(1, False, visible=0)), has_visible_tests=True)
    without = Pool("b", (cand(0, False), cand(1, False)))
    tests, rand = evaluate([with_tests, without], Settings(n_values=(2,), strategies=(Strategy.TESTS,
                                                                                        Strategy.RANDOM), seeds=2))
    assert (tests.n_problems, tests.n_skipped, tests.pass_at_1) == (1, 1, 1.0)
    assert (rand.n_problems, rand.n_skipped, rand.pass_at_1) == (2, 0, pytest.approx(0.25))
    # The fair floor and ceiling of `tests` are random and oracle on ITS problem ("a"), not on both.
    assert (tests.random_same_problems, tests.oracle_same_problems) == (pytest.approx(0.5), 1.0)
    assert rand.random_same_problems is None and rand.oracle_same_problems is None
    with pytest.raises(InputError, match="none of the 1 problems has visible tests"):
        evaluate([without], Settings(n_values=(2,), strategies=(Strategy.TESTS,), seeds=1))


def test_duplicate_tasks_and_bad_settings_are_rejected() -> None:
    pool = Pool("a", (cand(0, True),))
    with pytest.raises(InputError, match="appears twice"):
        evaluate([pool, pool], Settings())
    with pytest.raises(InputError, match="seeds"):
        evaluate([pool], Settings(seeds=0))
    with pytest.raises(InputError, match="N must be"):
        evaluate([pool], Settings(n_values=(0,), strategies=(Strategy.RANDOM,)))


@pytest.mark.parametrize(("kw", "message"), [
    ({"seeds": 0}, "field 'seeds': seeds must be >= 1, got 0 (use --seeds 20)"),
    ({"n_values": ()}, "field 'n': no N values given"),
    ({"n_values": (4, 0)}, "field 'n': N must be >= 1, got 0"),
    ({"top_k": 0, "strategies": (Strategy.RM,)}, "field 'top_k': top_k must be >= 1, got 0"),
    ({"cascade_max": 0}, "field 'cascade_max': cascade_max must be >= 1, got 0"),
    ({"strategies": ("rm", "best")}, "field 'strategies': unknown strategy 'best'"),
])
def test_settings_no_strategy_can_run_with_are_refused_in_one_line_before_any_draw(kw, message) -> None:
    settings = Settings(**kw)
    with pytest.raises(InputError) as err:
        settings.validate()
    assert str(err.value).startswith(message) and "\n" not in str(err.value)
    with pytest.raises(InputError, match=message.split(": ", 1)[1][:14]):
        evaluate([Pool("a", (cand(0, True),))], settings)


def test_pools_from_groups_rows_and_flags_tests() -> None:
    rows = [("t1", cand(0, True)), ("t2", cand(0, False)), ("t1", cand(1, False))]
    pools = pools_from(rows, visible=["t2"], generated=["t1"], generation_seconds={"t1": 3.0})
    assert [(p.task_id, len(p.candidates), p.has_visible_tests, p.has_generated_tests, p.generation_seconds)
            for p in pools] == [("t1", 2, False, True, 3.0), ("t2", 1, True, False, 0.0)]
