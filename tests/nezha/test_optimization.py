"""optimization.py against NumPy re-computations of the reference formulas and hand-computed values."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import optimization
from utils.errors import InputError

B1, B2, EPS, WD = 0.9, 0.999, 1e-6, 0.01
EXCLUDE = ("LayerNorm", "layer_norm", "bias")


# ---------------------------------------------------------------- NumPy references (reference section 2)
def np_decayed(name: str) -> bool:
    return not any(p in name for p in EXCLUDE)  # the patterns are plain words: re.search == substring


def np_adam(w, m, v, g, lr, name):
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    u = m / (np.sqrt(v) + EPS)
    if np_decayed(name):
        u = u + WD * w
    return w - lr * u, m, v


def np_lamb(w, m, v, g, lr, name, global_step):
    t = global_step + 1
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    mh = m / (1 - B1 ** t)
    vh = v / (1 - B2 ** t)
    w_norm = np.linalg.norm(w)
    g_norm = np.linalg.norm(g)
    g_hat_norm = np.linalg.norm(mh / np.sqrt(vh + EPS) + WD * w)
    trust = w_norm / g_hat_norm if (w_norm > 0 and g_norm > 0) else 1.0
    trust = min(max(trust, 0.0), 10.0)
    u = mh / (np.sqrt(vh) + EPS)
    if np_decayed(name):
        u = u + WD * w
    return w - trust * lr * u, m, v


def np_lr(step, init_lr, total, warmup):
    """Hand formula of section 2.1 (float64)."""
    if warmup and step < warmup:
        return init_lr * step / warmup
    return init_lr / (1 - warmup / total) * (1 - min(step, total) / total)


def np_lr_float32(step, init_lr, total, warmup):
    """The same in float32, operation by operation as TF1's polynomial_decay and the warmup blend."""
    f = np.float32
    if warmup and step < warmup:
        return f(init_lr) * (f(step) / f(warmup))
    adjusted = f(init_lr * (init_lr / (init_lr * (1.0 - warmup / total))))
    return adjusted * (f(1.0) - f(min(step, total)) / f(total))


# ---------------------------------------------------------------- schedule
def test_schedule_hand_computed_points():
    schedule = optimization.WarmupPolynomialDecay(1e-3, num_train_steps=10, num_warmup_steps=2)
    # adjusted_init_lr = 1e-3 / (1 - 2/10) = 1.25e-3
    expected = {0: 0.0, 1: 0.5e-3, 2: 1e-3, 3: 0.875e-3, 6: 0.5e-3, 9: 0.125e-3, 10: 0.0, 15: 0.0}
    for step, value in expected.items():
        assert float(schedule(tf.constant(step, tf.int64))) == pytest.approx(value, abs=1e-10), step
    assert schedule.adjusted_init_lr == pytest.approx(1.25e-3)


def test_schedule_matches_formula_without_warmup_and_at_large_step_counts():
    no_warmup = optimization.WarmupPolynomialDecay(5e-5, num_train_steps=100, num_warmup_steps=0)
    assert float(no_warmup(0)) == pytest.approx(5e-5, rel=1e-7)
    assert float(no_warmup(25)) == pytest.approx(3.75e-5, rel=1e-6)
    nezha = optimization.WarmupPolynomialDecay(1.8e-4, num_train_steps=100000, num_warmup_steps=1800)
    for step in (0, 1, 900, 1799, 1800, 1801, 50000, 99999, 100000):
        value = float(nezha(tf.constant(step, tf.int64)))
        assert value == pytest.approx(np_lr_float32(step, 1.8e-4, 100000, 1800), rel=1e-6, abs=1e-15)
        assert value == pytest.approx(np_lr(step, 1.8e-4, 100000, 1800), abs=5e-11)  # float32 rounding
    assert float(nezha(1800)) == pytest.approx(1.8e-4, rel=1e-6)  # no jump at the end of warmup


def test_schedule_warmup_covering_the_whole_run_has_no_decay_phase():
    for warmup in (10, 12):  # the original: ZeroDivisionError for W == T; W > T never reaches the decay
        schedule = optimization.WarmupPolynomialDecay(1e-3, num_train_steps=10, num_warmup_steps=warmup)
        assert float(schedule(5)) == pytest.approx(1e-3 * 5 / warmup)
        assert float(schedule(warmup)) == 0.0
    with pytest.raises(InputError, match="num_train_steps"):
        optimization.WarmupPolynomialDecay(1e-3, num_train_steps=0, num_warmup_steps=0)


# ---------------------------------------------------------------- optimisers
SHAPES = {
    "bert/encoder/layer_0/attention/self/query/kernel": (4, 3),  # decayed
    "bert/encoder/layer_0/attention/self/query/bias": (3,),  # excluded: bias
    "bert/encoder/layer_0/output/LayerNorm/gamma": (3,),  # excluded: LayerNorm
    "cls/predictions/output_bias": (5,),  # excluded: bias
    "zero/kernel": (2, 2),  # w = 0: trust ratio 1.0
    "frozen/kernel": (3,),  # g = 0 at every step: trust ratio 1.0
}


def _problem(seed=0, steps=4):
    rng = np.random.RandomState(seed)
    weights = {n: (np.zeros(s) if n == "zero/kernel" else rng.normal(0, 1, s)).astype(np.float32)
               for n, s in SHAPES.items()}
    grads = [{n: (np.zeros(s) if n == "frozen/kernel" else rng.normal(0, 0.5, s)).astype(np.float32)
              for n, s in SHAPES.items()} for _ in range(steps)]
    return weights, grads


@pytest.mark.parametrize("algo", ["adam", "lamb"])
def test_optimizer_steps_match_numpy_reference(algo):
    weights, grads = _problem()
    variables = [tf.Variable(w, name=n) for n, w in weights.items()]
    total, warmup, init_lr = 20, 2, 0.01
    opt = optimization.create_optimizer(init_lr, total, warmup, optimizer=algo)
    opt.build(variables)
    state = {n: (w.astype(np.float64), np.zeros(w.shape), np.zeros(w.shape)) for n, w in weights.items()}
    for step, grad in enumerate(grads):
        lr = opt.apply_gradients([(tf.constant(grad[v.name[:-2]]), v) for v in variables],
                                 tf.constant(step, tf.int64))
        ref_lr = np_lr(step, init_lr, total, warmup)
        assert float(lr) == pytest.approx(ref_lr, rel=1e-6, abs=1e-12)
        for name, (w, m, v) in state.items():
            g = grad[name].astype(np.float64)
            state[name] = (np_adam(w, m, v, g, ref_lr, name) if algo == "adam"
                           else np_lamb(w, m, v, g, ref_lr, name, step))
    slots = opt.slot_variables()
    assert set(slots) == {f"{n}/{algo}_{s}" for n in SHAPES for s in "mv"}
    for variable in variables:
        name = variable.name[:-2]
        w, m, v = state[name]
        np.testing.assert_allclose(variable.numpy(), w, rtol=2e-5, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(slots[f"{name}/{algo}_m"].numpy(), m, rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(slots[f"{name}/{algo}_v"].numpy(), v, rtol=1e-5, atol=1e-9)
    # the edge cases did something: the zero variable moved, the frozen one only by weight decay
    assert np.abs(variables[4].numpy()).max() > 0


def test_lamb_trust_ratio_quirks_change_the_update():
    """A decay-excluded variable still gets wd * w inside the trust-ratio norm (the original's quirk)."""
    w = np.array([3.0, -4.0], np.float32)
    g = np.array([0.1, 0.2], np.float32)
    results = {}
    for name in ("a/kernel", "a/bias"):
        var = tf.Variable(w, name=name)
        opt = optimization.LAMB(1.0, weight_decay=0.5, exclude_from_weight_decay=EXCLUDE)
        opt.build([var])
        opt.apply_gradients([(tf.constant(g), var)], tf.constant(0, tf.int64))
        results[name] = var.numpy()
    # step 1: m_hat = g, v_hat = g^2, so m_hat / sqrt(v_hat + eps) ~ sign(g) and the update ~ sign(g)
    sign = np.sign(g)
    trust = np.linalg.norm(w) / np.linalg.norm(g / np.sqrt(g * g + 1e-6) + 0.5 * w)
    update_bias = g / (np.abs(g) + 1e-6)
    np.testing.assert_allclose(results["a/bias"], w - trust * update_bias, rtol=1e-5)
    np.testing.assert_allclose(results["a/kernel"], w - trust * (update_bias + 0.5 * w), rtol=1e-5)
    assert not np.allclose(trust, np.linalg.norm(w) / np.linalg.norm(sign))


def test_create_optimizer_choices():
    adam = optimization.create_optimizer(1e-4, 100, 10)
    assert isinstance(adam, optimization.AdamWeightDecay)
    assert (adam.weight_decay_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (0.01, 0.9, 0.999, 1e-6)
    lamb = optimization.create_optimizer(1e-4, 100, 10, optimizer="lamb")
    assert isinstance(lamb, optimization.LAMB) and lamb.weight_decay_rate == 0.01
    assert lamb.exclude_from_weight_decay == EXCLUDE
    with pytest.raises(ValueError, match="Unsupported optimizer option: sgd"):
        optimization.create_optimizer(1e-4, 100, 10, optimizer="sgd")


# ---------------------------------------------------------------- loss scaling
def np_loss_scale(flags, scale, incr_n, decr_n):
    """TF 1.13 contrib ExponentialUpdateLossScaleManager, step by step."""
    good = bad = 0
    out = []
    for finite in flags:
        if finite:
            if good + 1 >= incr_n:
                scale, good, bad = scale * 2, 0, 0
            else:
                good += 1
        else:
            if bad + 1 >= decr_n:
                scale, good, bad = max(1.0, scale * 0.5), 0, 0
            else:
                bad, good = bad + 1, 0
        out.append((scale, good, bad))
    return out


def test_loss_scale_state_machine():
    manager = optimization.DynamicLossScale(init_loss_scale=8.0, incr_every_n_steps=3, decr_every_n_nan_or_inf=2)
    flags = [True, True, True,  # x2 after 3 finite steps -> 16
             False, True, False,  # 2 non-finite steps, not consecutive -> 8
             True, True, False, True, True, True,  # the bad step resets the good count -> 16 at the end
             False, False, False, False, False, False, False, False, False]  # halves every 2, floor 1
    expected = np_loss_scale(flags, 8.0, 3, 2)
    for finite, (scale, good, bad) in zip(flags, expected):
        manager.update(tf.constant(finite))
        assert (float(manager.loss_scale), int(manager.good_steps), int(manager.bad_steps)) == (scale, good, bad)
    assert [e[0] for e in expected][:12] == [8, 8, 16, 16, 16, 8, 8, 8, 8, 8, 8, 16]
    assert float(manager.loss_scale) == 1.0
    assert set(manager.state_variables()) == {"loss_scale", "good_steps", "bad_steps"}


def test_loss_scale_does_not_grow_to_infinity_and_original_defaults():
    manager = optimization.DynamicLossScale(init_loss_scale=2.0 ** 127, incr_every_n_steps=1)
    manager.update(tf.constant(True))
    assert float(manager.loss_scale) == 2.0 ** 127 and int(manager.good_steps) == 0
    default = optimization.DynamicLossScale()
    assert (float(default.loss_scale), default.incr_every_n_steps, default.decr_every_n_nan_or_inf,
            default.decr_ratio) == (2.0 ** 32, 1000, 2, 0.5)


# ---------------------------------------------------------------- the train step
def _linear_step(weights, loss_of, algo="adam", lr=0.1, **kwargs):
    variables = [tf.Variable(w, name=n) for n, w in weights.items()]
    opt = (optimization.AdamWeightDecay(lr, weight_decay_rate=WD, exclude_from_weight_decay=EXCLUDE)
           if algo == "adam" else optimization.LAMB(lr, weight_decay=WD, exclude_from_weight_decay=EXCLUDE))
    step = optimization.build_train_step(lambda batch: loss_of(variables, batch), variables, opt, **kwargs)
    return variables, step


def test_global_norm_clipping_to_one():
    weights = {"w/kernel": np.array([1.0, 2.0], np.float32), "w/bias": np.array([0.5], np.float32)}
    for coefficients in ([3.0, 4.0, 12.0], [0.1, 0.2, 0.2]):  # norms 13 (clipped) and 0.3 (not clipped)
        c = np.array(coefficients, np.float32)
        variables, step = _linear_step(
            weights, lambda vs, batch: tf.reduce_sum(vs[0] * batch[:2]) + tf.reduce_sum(vs[1] * batch[2:]))
        result = step(iter([tf.constant(c)]))
        norm = np.linalg.norm(c)
        assert float(result["grad_norm"]) == pytest.approx(norm, rel=1e-6)
        g = c / max(norm, 1.0)
        for variable, grad, name in ((variables[0], g[:2], "w/kernel"), (variables[1], g[2:], "w/bias")):
            w, _, _ = np_adam(weights[name].astype(np.float64), 0, 0, grad, 0.1, name)
            np.testing.assert_allclose(variable.numpy(), w, rtol=1e-6)
        assert int(result["global_step"]) == 1 and bool(result["applied"])


def test_overflow_skips_the_update_and_keeps_global_step():
    weights = {"w/kernel": np.array([1.0, -2.0, 0.5], np.float32)}

    def loss_of(vs, batch):  # a loss of 1e30 overflows float32 once scaled by 2^32
        return tf.reduce_sum(vs[0] * batch["x"]) * batch["size"]

    manager = optimization.DynamicLossScale(init_loss_scale=2.0 ** 32, incr_every_n_steps=2)
    variables, step = _linear_step(weights, loss_of, algo="lamb", loss_scale=manager)
    x = tf.constant([0.3, 0.1, -0.2])
    big = {"x": x, "size": tf.constant(1e30)}
    small = {"x": x, "size": tf.constant(1.0)}
    slots = step.optimizer.slot_variables()
    for bad_steps_after, scale_after in ((1, 2.0 ** 32), (0, 2.0 ** 31)):  # halved at the 2nd non-finite step
        result = step(iter([big]))
        assert not bool(result["applied"]) and int(result["global_step"]) == 0
        np.testing.assert_array_equal(variables[0].numpy(), weights["w/kernel"])
        assert all(not s.numpy().any() for s in slots.values())
        assert float(result["loss_scale"]) == 2.0 ** 32  # the scale this step used
        assert (int(manager.bad_steps), float(manager.loss_scale)) == (bad_steps_after, scale_after)
    result = step(iter([small]))
    assert bool(result["applied"]) and int(step.global_step) == 1
    assert float(result["grad_norm"]) == pytest.approx(np.linalg.norm([0.3, 0.1, -0.2]), rel=1e-6)
    w, _, _ = np_lamb(weights["w/kernel"].astype(np.float64), 0, 0, np.array([0.3, 0.1, -0.2]), 0.1,
                      "w/kernel", 0)
    np.testing.assert_allclose(variables[0].numpy(), w, rtol=1e-5)
    # a NaN loss is also skipped
    result = step(iter([{"x": x, "size": tf.constant(np.nan, tf.float32)}]))
    assert not bool(result["applied"]) and int(step.global_step) == 1
    assert set(step.state_variables()) == {"global_step", "w/kernel/lamb_m", "w/kernel/lamb_v", "loss_scale",
                                           "good_steps", "bad_steps"}


def _mlp_problem(seed=1):
    rng = np.random.RandomState(seed)
    weights = {"dense/kernel": rng.normal(0, 0.5, (6, 8)).astype(np.float32),
               "dense/bias": np.zeros(8, np.float32),
               "dense/LayerNorm/gamma": np.ones(8, np.float32),
               "out/kernel": rng.normal(0, 0.5, (8, 2)).astype(np.float32),
               "unused/kernel": rng.normal(0, 0.5, (3,)).astype(np.float32)}  # no gradient (like an unused pooler)
    x = rng.normal(0, 1, (12, 6)).astype(np.float32)
    y = rng.normal(0, 1, (12, 2)).astype(np.float32)
    return weights, x, y


def _mlp_loss(vs, batch):
    kernel, bias, gamma, out, _ = vs
    h = tf.nn.gelu(tf.matmul(batch[0], kernel) + bias, approximate=True) * gamma
    pred = tf.matmul(h, out)
    mse = tf.reduce_mean(tf.square(pred - batch[1]))
    return mse, {"abs_error": tf.reduce_mean(tf.abs(pred - batch[1]))}


def test_gradient_accumulation_equals_the_big_batch():
    weights, x, y = _mlp_problem()
    big_vars, big = _linear_step(weights, _mlp_loss, algo="lamb", loss_scaling=True)
    acc_vars, acc = _linear_step(weights, _mlp_loss, algo="lamb", loss_scaling=True, gradient_accumulation_steps=3)
    for _ in range(2):
        big_result = big(iter([(tf.constant(x), tf.constant(y))]))
        acc_result = acc(iter([(tf.constant(x[i:i + 4]), tf.constant(y[i:i + 4])) for i in (0, 4, 8)]))
    for a, b in zip(acc_vars, big_vars):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6, err_msg=a.name)
    assert int(acc.global_step) == 2
    np.testing.assert_allclose(float(acc_result["loss"]), float(big_result["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(acc_result["grad_norm"]), float(big_result["grad_norm"]), rtol=1e-5)
    assert "abs_error" in acc_result
    np.testing.assert_array_equal(acc_vars[4].numpy(), weights["unused/kernel"])  # no gradient: untouched
    assert "unused/kernel/lamb_m" not in acc.state_variables()
    assert all(not a.numpy().any() for a in acc.accumulators)  # emptied after the optimiser step
    with pytest.raises(InputError, match="gradient_accumulation_steps"):
        _linear_step(weights, _mlp_loss, gradient_accumulation_steps=0)


def test_xla_step_equals_eager_step():
    weights, x, y = _mlp_problem(seed=2)
    schedule = optimization.WarmupPolynomialDecay(0.05, num_train_steps=10, num_warmup_steps=2)
    runs = {}
    for use_xla in (False, True):
        variables = [tf.Variable(w, name=n) for n, w in weights.items()]
        opt = optimization.LAMB(schedule, weight_decay=WD, exclude_from_weight_decay=EXCLUDE)
        step = optimization.build_train_step(lambda batch, vs=variables: _mlp_loss(vs, batch), variables, opt,
                                             loss_scaling=True, use_xla=use_xla)
        results = [step(iter([(tf.constant(x), tf.constant(y))])) for _ in range(3)]
        runs[use_xla] = ([v.numpy() for v in variables], [float(r["learning_rate"]) for r in results],
                         float(results[-1]["loss"]))
    for eager, compiled in zip(runs[False][0], runs[True][0]):
        np.testing.assert_allclose(compiled, eager, rtol=1e-5, atol=1e-6)
    assert runs[True][1] == pytest.approx([0.0, 0.025, 0.05])
    assert runs[True][2] == pytest.approx(runs[False][2], rel=1e-5)
    assert not np.allclose(runs[True][0][0], weights["dense/kernel"])
