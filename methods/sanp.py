"""SANP: Self-Adaptive Network Pruning (Chen et al., arXiv 1910.08906).

One saliency-and-pruning module (SPM) per batch-normalised conv predicts a signed saliency s per
output channel from the pooled conv input (sec. 3.2); improved semantic hashing binarises it into a
code b (sec. 3.3); the channel outputs s*b*BN(conv(x)) and b = 0 is not computed (eq. 3-4). A
budget-adaptive lambda on the L1 of s moves the measured mean cost onto the budget (sec. 3.4).
The two ablations of Table 3 are methods of their own: `sanp_fixed_k` (the same top-k fraction in
every layer, no binarisation) and `sanp_static` (saliency from a learned vector, not the input), trained on
equal terms: the same warm-up, objective, lambda rule and budget path. Stated deviation (docs/choices.md):
the budget eq. 10 steers toward ramps down from dense over the first part of fine-tuning (`budget_ramp`).
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from prunebench.api import Method, UserError, copy_backbone
from prunebench.claims import (FAILS, HOLDS, INCONCLUSIVE, Claim, Judgement, compare_at_costs, interval, noise_text, pt,
                               shape_verdict)
from prunebench.backbones import GatedResNet
from prunebench.data import Dataset, Normalizer
from prunebench.flops import Accountant, controller_macs
from prunebench.gates import ChannelGate, GatePolicy, module_key, top_k_mask
from prunebench.train import TrainSpec, epoch_steps, fit, mean_cross_entropy, recalibrate_bn, schedule_travel

def saturating_sigmoid(x: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """clamp(a*sigmoid(x) - b, 0, 1) (Kaiser & Sutskever 2015; eq. 7)."""
    return torch.clamp(a * torch.sigmoid(x) - b, 0.0, 1.0)


def semantic_hash(s: torch.Tensor, training: bool, a: float, b: float,
                  noise_scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Improved semantic hashing (Kaiser & Bengio 2018; sec. 3.3): (the code used in the forward, s2 as bool).

    Training: s1 = saturating_sigmoid(s + noise), noise ~ N(0, 1); s2 = 1[s1 > 0.5]. A random half
    of the samples uses s1, the other half s2, and the gradient always flows through s1
    (straight-through). Evaluation: no noise, s2 only. `noise_scale`: the noise's sd is that fraction
    of the sample's mean |s| in the layer instead of 1 (see SANP.hyperparameters).
    """
    if not training:
        s2 = inference_code(s, a, b)
        return s2.to(s.dtype), s2
    noise = torch.randn_like(s)
    if noise_scale is not None:
        noise = noise * (noise_scale * s.detach().abs().mean(1, keepdim=True))
    s1 = saturating_sigmoid(s + noise, a, b)
    s2 = (s1 > 0.5).to(s.dtype)
    hard_rows = torch.zeros(s.shape[0], 1, dtype=torch.bool, device=s.device)
    hard_rows[torch.randperm(s.shape[0], device=s.device)[: s.shape[0] // 2]] = True
    return torch.where(hard_rows, s1 + (s2 - s1).detach(), s1), s2 > 0


def inference_code(s: torch.Tensor, a: float, b: float) -> torch.Tensor:
    """The binary code inference uses: s2 without noise (bool)."""
    return saturating_sigmoid(s, a, b) > 0.5


def budget_lambda(cost_average: float, budget_macs: float, dense_macs: float, lambda0: float,
                  densify: bool = True) -> float:
    """lambda = clamp(lambda0 * (p_t - p) / p0, -lambda0, lambda0) (eq. 10): positive above the budget
    (more sparsity), negative below it (less) unless `densify` is off (then 0 below it)."""
    return max(-lambda0 if densify else 0.0, min(lambda0, lambda0 * (cost_average - budget_macs) / dense_macs))


def ramped_budget(step: int, total_steps: int, budget: float, ramp: float) -> float:
    """The budget eq. 10 steers toward at `step` (fraction of dense): from 1 down to `budget`, linearly over the first
    `ramp` of the steps, then `budget` ([choice]; ramp 0: the paper's fixed budget from the first step)."""
    if ramp <= 0:
        return budget
    return budget + (1 - budget) * max(0.0, 1 - step / (ramp * total_steps))


def update_average(average: torch.Tensor, value: float, momentum: float) -> None:
    """p_t: exponential moving average of the measured per-batch cost, started at the first batch [choice]."""
    if torch.isnan(average):
        average.fill_(value)
    else:
        average.mul_(momentum).add_((1 - momentum) * value)


class SaliencyModule(nn.Module):
    """s = W2*ReLU(W1*d), d the pooled conv input (eq. 5-6; SE-style, no sigmoid); `static`: d is a
    learned vector, the same for every sample (Table 3's STATIC)."""

    def __init__(self, c_in: int, c_out: int, reduction: int, min_hidden: int, static: bool, initial: float):
        super().__init__()
        hidden = max(min_hidden, c_in // reduction)
        self.fc1, self.fc2 = nn.Linear(c_in, hidden), nn.Linear(hidden, c_out)
        # [choice] s starts at `initial` for every channel (all codes on); the BN it scales is divided by
        # the same value, so the inserted network computes the pretrained function exactly.
        nn.init.zeros_(self.fc2.weight)
        nn.init.constant_(self.fc2.bias, initial)
        self.static_input = nn.Parameter(torch.zeros(c_in)) if static else None

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        d = pooled if self.static_input is None else self.static_input.expand(pooled.shape[0], -1)
        return self.fc2(F.relu(self.fc1(d)))


class SANPPolicy(GatePolicy):
    """Per gated conv: saliency s from its SPM, a binary code b, gate scale s*b (zero where b = 0)."""

    def __init__(self, net: GatedResNet, units: list[str], variant: str, hp: dict):
        super().__init__()
        self.gated_units = frozenset(units)
        self.variant, self.a, self.b, self.noise_scale = variant, hp["hash_a"], hp["hash_b"], hp["noise_scale"]
        self.spm = nn.ModuleDict({
            module_key(u): SaliencyModule(net.unit(u).conv.in_channels, net.unit(u).out_channels, hp["reduction"],
                                    hp["min_hidden"], static=variant == "static", initial=hp["saliency_init"])
            for u in units})
        self.keep_fraction = 1.0  # fixed_k: the fraction of channels every layer keeps
        self.cost_table = None    # fixed_k: (keep fractions, their measured costs), see cost_by_fraction
        self.register_buffer("cost_average", torch.tensor(float("nan"), dtype=torch.float64))  # p_t
        self.saliency_l1 = None
        if variant == "static":
            self.known_macs = 0.0  # input-independent: the saliencies are constants, computed once

    def begin(self, x):
        self.saliency_l1 = x.new_zeros(())

    def channel_gate(self, unit, pooled):
        s = self.spm[module_key(unit)](pooled)
        self.saliency_l1 = self.saliency_l1 + s.abs().sum(1).mean()  # sum over layers of ||s^l||_1, batch mean
        if self.variant == "fixed_k":  # no binarisation: the k highest saliencies, k the same fraction everywhere
            mask = top_k_mask(s, max(1, math.ceil(self.keep_fraction * s.shape[1] - 1e-9)))
            return ChannelGate(s * mask, None, mask)
        code, binary = semantic_hash(s, self.training, self.a, self.b, self.noise_scale)
        return ChannelGate(s * code, None, binary)  # the trace counts the binary code


def gated_units(net: GatedResNet, gate_stem: bool) -> list[str]:
    """Every batch-normalised conv (sec. 4.1.2): the stem and the residual branches' convs (the
    backbone has no gate point on a 1x1 shortcut conv)."""
    units = [u for u in net.unit_names() if not u.endswith("shortcut") and (gate_stem or u != "stem")]
    return [u for u in units if net.unit(u).norm is not None]


def _lands_on_budget(ev):
    """SANP's mean MACs lie within +-10 % of its budget: per budget, the 95 % interval of the mean cost (test
    images, paired bootstrap; seeds) inside budget x [0.9, 1.1] holds, entirely outside does not."""
    if not ev.has("sanp"):
        return None
    rows = []
    for p in ev.points("sanp").itertuples():
        cost = ev.at_point("sanp", p.train_budget, p.eval_budget, value="macs")
        d = interval(cost)
        room = 0.1 * p.train_budget - abs(d.value - p.train_budget)  # distance inside the +-10 % band
        verdict = HOLDS if room >= d.half_width else FAILS if room < -d.half_width else INCONCLUSIVE
        rows.append((p.train_budget, d, room, verdict))
    order = [FAILS, INCONCLUSIVE, HOLDS]
    budget, d, room, verdict = min(rows, key=lambda r: (order.index(r[3]), r[2]))
    detail = "; ".join(f"{b:g}: {x.value:.3f}" for b, x, _, _ in rows)
    return Judgement(verdict, f"mean cost per budget {detail}", f"{pt(room)} inside the band at {budget:g}",
                     noise_text(d), d.seeds)


def _beats_ablations(ev):
    """SANP is more accurate than its fixed-k and static ablations, SANP interpolated at each ablation's MACs."""
    ablations = [name for name in ("sanp_fixed_k", "sanp_static") if ev.has("sanp", name)]
    if not ablations:
        return None
    return shape_verdict([(f"{name[5:]} {label}", d) for name in ablations
                          for label, d in compare_at_costs(ev, "sanp", name, at_points_of=name)])


class SANP(Method):
    name = "sanp"
    no_pruning = 1.0
    variant = "sanp"
    deviations = ("the budget ramped down (budget_ramp)", "p_t from inference codes",
                  "BN statistics recalibrated", "lambda0 in units of the schedule (lambda_schedule_share, where set)")
    densify = True  # eq. 10's negative lambda below the budget lets the saliencies grow back
    knob = "flops_frac"
    test_time_knob = False
    # Table 1 (CIFAR-10; "FLOPs(M)" there are MACs); the schedule of sec. 4.1.2: 300 fine-tuning epochs.
    claims = (Claim("resnet18", "ResNet-18 on CIFAR-10: error 5.64 % at 163M of 501M MACs (dense 5.40 %)",
                    "SANP, Table 1", "cifar10", "resnet18", (("finetune", 300),), macs_frac=163 / 501,
                    accuracy=1 - 0.0564, dense_accuracy=1 - 0.0540, margin=0.005),
              Claim("m-cifarnet", "M-CifarNet on CIFAR-10: error 9.41 % at 39.3M of 174.3M MACs (dense 8.63 %)",
                    "SANP, Table 1", "cifar10", "m-cifarnet", (("finetune", 300),), macs_frac=39.3 / 174.3,
                    accuracy=1 - 0.0941, dense_accuracy=1 - 0.0863, margin=0.005),
              Claim("lands-on-budget", "the mean cost lands on the budget (within 10 %) at every budget",
                    "SANP, budget-adaptive lambda (sec. 3)", "cifar10", "resnet18",
                    published="(Table 1's backbones: ResNet-18, VGG, M-CifarNet)", check=_lands_on_budget,
                    every_budget=True),
              Claim("beats-ablations", "more accurate than fixed-k and static saliency at equal MACs, at every budget "
                    "of theirs", "SANP Table 3 (ResNet-18: 5.41 % vs 5.62 % / 5.48 %)", "cifar10", "resnet18",
                    published="at about 333M of 501M MACs", check=_beats_ablations, every_budget=True))
    # The SPM warm-up (CE only, convs frozen) does not depend on the budget: made once per backbone.
    artifacts = {"warmup": ("reduction", "min_hidden", "saliency_init", "hash_a", "hash_b", "noise_scale", "gate_stem",
                            "recalibrate_images", "warmup")}
    hyperparameters = {
        "reduction": 4,        # [choice] SE reduction r; hidden = max(min_hidden, C_in / r)
        "min_hidden": 4,
        # [choice] initial saliency: large enough that the training noise rarely flips a code (3: 0.1 %)
        "saliency_init": 3.0,
        "hash_a": 1.2,         # saturating sigmoid a, b (Kaiser & Bengio's values)
        "hash_b": 0.1,
        "lambda0": 0.01,       # lambda's bound (sec. 4.1.2)
        # [choice] lambda0 in units of the schedule (schedule_lambda0): the L1 at full clamp alone would carry the
        # mean saliency to 0 within this share of the fine-tuning steps, whatever the dataset; null: lambda0
        "lambda_schedule_share": None,
        # [choice] the hashing noise's sd as a fraction of the sample's mean |s| in the layer (null: N(0, 1), the
        # paper's): s's scale is free (BN's affine makes up for it), so a fixed sd turns into coin flips once the
        # L1 has shrunk s, and into no noise if s grows
        "noise_scale": None,
        # [choice] the budget of eq. 10 falls from dense to the budget over this fraction of the fine-tuning steps
        # (0: the paper's fixed budget): at the fixed budget lambda sits at its bound from the first step and, on a
        # short schedule, the L1 outweighs the cross-entropy while s falls (see docs/choices.md)
        "budget_ramp": 0.4,
        "cost_momentum": 0.9,  # [choice] p_t = moving average of the measured per-batch cost
        "spm_lr_scale": 1.0,   # [choice] the SPMs' learning rate as a multiple of the backbone's in fine-tuning
        # [choice] p_t from the codes inference will run ("inference", see _finetune) rather than the noisy
        # codes of the training forward ("training"): those landed p_t at 0.51 of dense while the test cost
        # was 0.95 (budget 0.5, default config), since L1 parks s near 0, where the noise flips half the codes.
        "cost_from": "inference",
        "cost_every": 4,
        "gate_stem": True,
        # [choice] BN statistics re-estimated with inference-time gating (no noise, binary codes) after
        # training, on this many training images (0: off): training normalises noisy, half-soft codes
        "recalibrate_images": 10000,
        "warmup": {"epochs": 1, "lr": 0.01, "schedule": "cosine"},
        "finetune": {"epochs": 3, "lr": 0.01, "schedule": "cosine"},
    }
    quick_hp = {"warmup": {"epochs": 1, "batch_size": 64}, "finetune": {"epochs": 1, "batch_size": 64}}

    artifact_stages = {"warmup": ("warmup",)}

    def budget_range(self, backbone):
        return (0.01, 1.0)

    def training_stages(self, hp, budget):
        return {"finetune": 1}

    def within_budget(self, records, budget, dense_macs):
        # the budget is promised on average (sec. 4.1.2): this is the share of samples at or below it
        return records["macs"] <= float(budget) * dense_macs

    def resolve_hp(self, hp):
        hp = super().resolve_hp(hp)
        if hp["cost_from"] not in ("inference", "training"):
            raise UserError(f"{self.name}: cost_from must be 'inference' or 'training', not {hp['cost_from']!r}")
        share, spec = hp["lambda_schedule_share"], TrainSpec.from_dict(hp["finetune"], f"{self.name}.finetune")
        if share is not None and not (0 < share <= 1 and spec.optimizer == "sgd" and spec.momentum < 1):
            raise UserError(f"{self.name}: lambda_schedule_share must be in (0, 1] with a momentum SGD fine-tuning "
                            f"(momentum < 1), not {share!r} with {spec.optimizer} at momentum {spec.momentum}")
        return hp

    def _gated(self, backbone: GatedResNet, hp: dict, run) -> GatedResNet:
        net = copy_backbone(backbone, run.device)
        units = gated_units(net, hp["gate_stem"])
        with torch.no_grad():
            for unit in units:  # s * BN(x) = BN(x) at the start: the scale moves from BN's affine to s
                norm = net.unit(unit).norm
                norm.weight.div_(hp["saliency_init"])
                norm.bias.div_(hp["saliency_init"])
        net.policy = SANPPolicy(net, units, self.variant, hp).to(run.device)
        return net

    def _warm_up(self, net: GatedResNet, data: Dataset, hp: dict, run) -> None:
        """SPMs trained with cross-entropy only, every backbone parameter frozen (sec. 4.1.2)."""
        backbone_params = net.backbone_parameters()
        for p in backbone_params:
            p.requires_grad_(False)
        try:
            fit(net, data, TrainSpec.from_dict(hp["warmup"], f"{self.name}.warmup"), run, name=f"{self.name}-warmup")
        finally:
            for p in backbone_params:
                p.requires_grad_(True)
        self._recalibrated(net, data, hp)

    def prepare(self, artifact, backbone, data, hp, run):
        if artifact not in self.artifacts:
            raise UserError(f"{self.name} has no artifact {artifact!r}")
        net = self._gated(backbone, hp, run)
        self._warm_up(net, data, hp, run)
        return {"state": {k: v.cpu() for k, v in net.state_dict().items()}}

    def train(self, backbone, data, budget, hp, run):
        net = self._gated(backbone, hp, run)
        warm = run.artifact("warmup", lambda: self.prepare("warmup", backbone, data, hp, run))
        net.load_state_dict(warm["state"])
        self._finetune(net, data, float(budget), hp, run)
        return self._recalibrated(net, data, hp)

    def _recalibrated(self, net, data, hp):
        recalibrate_bn(net, data, hp["recalibrate_images"])
        return net.eval()

    def _finetune(self, net: GatedResNet, data: Dataset, budget: float, hp: dict, run) -> None:
        """Joint fine-tuning with CE + lambda * (1/N) * sum_l ||s^l||_1, lambda from the measured cost (eq. 9-10)."""
        # The budget is a fraction of the dense backbone; the SPMs' own cost counts against it.
        accountant, spm_macs = costing(net, data)
        dense, target = accountant.dense_macs, budget * accountant.dense_macs
        if target <= spm_macs:
            raise UserError(f"{self.name}: budget {budget:g} of dense MACs is below the SPMs' own cost "
                            f"({spm_macs / dense:.4f} of dense); choose a larger budget")
        policy = net.policy
        spec = TrainSpec.from_dict(hp["finetune"], f"{self.name}.finetune")
        filters = sum(net.unit(u).out_channels for u in policy.gated_units)  # N of eq. 9

        steps = itertools.count()
        total_steps = spec.epochs * epoch_steps(spec, len(data.train_x))
        lambda0 = hp["lambda0"]
        if hp["lambda_schedule_share"] is not None:  # measured before fit, so that a resumed job finds the same value
            ce, l1 = start_losses(net, data, filters)
            lambda0 = schedule_lambda0(l1, filters, spec, hp["spm_lr_scale"], total_steps, hp["lambda_schedule_share"])
            run.log.info("%s: lambda0 = %.4g (cross-entropy %.4f, mean |s| %.4f)", self.name, lambda0, ce, l1)

        def loss_fn(model, x, y):
            # p_t's sample: the mean cost of the batch, counted by the one accountant from the binary codes
            # in a trace. "inference": every `cost_every` steps, the policy in eval mode (no noise) with BN on
            # batch statistics, i.e. the codes of the recalibrated network; run first, since a forward
            # restarts the policy's L1 sum. "training": the noisy codes of the training forward itself.
            step = next(steps)
            steer = ramped_budget(step, total_steps, budget, hp["budget_ramp"])
            self._follow_budget(policy, steer)
            trace = None
            if hp["cost_from"] == "training":
                logits, trace = model.run(x)
            else:
                if step % hp["cost_every"] == 0:
                    policy.eval()
                    with torch.no_grad():
                        trace = model.run(x)[1]
                    policy.train()
                logits = model(x)
            if trace is not None:
                update_average(policy.cost_average, float(accountant.backbone_macs(trace).mean()) + spm_macs,
                               hp["cost_momentum"])
            # Table 3 compares the ablations on the same objective and the same budget path: fixed-k's k follows
            # it, so its lambda stays near 0, as SANP's does once p_t is there
            lam = budget_lambda(float(policy.cost_average), steer * dense, dense, lambda0, densify=self.densify)
            ce, l1 = F.cross_entropy(logits, y), policy.saliency_l1 / filters
            values = {"cross-entropy": ce.item(), "lambda x L1 / N": lam * l1.item(), "mean |s|": l1.item(),
                      "cost (of dense)": float(policy.cost_average) / dense, "budget steered to": steer}
            for key, value in values.items():
                net.training_curves.setdefault(key, []).append(round(value, 6))
            return ce + lam * l1, logits

        def report():
            if not torch.isnan(policy.cost_average):
                run.log.info("%s: p_t = %.4f of dense (budget %.4f)", self.name,
                             float(policy.cost_average) / dense, budget)

        def epoch_start(epoch):
            if epoch:
                report()
            self._on_epoch_start(net, data, budget, accountant, spm_macs, run)

        # Per step, for the report's training-curves figure (carried by the model into its evaluations)
        net.training_curves = {}
        groups = [{"params": net.backbone_parameters()},
                  {"params": list(policy.parameters()), "lr": spec.lr * hp["spm_lr_scale"]}]
        fit(net, data, spec, run, name=f"{self.name}-finetune", loss_fn=loss_fn, on_epoch_start=epoch_start, params=groups)
        report()

    def _on_epoch_start(self, net, data, budget, accountant, spm_macs, run) -> None:
        """At each fine-tuning epoch's start: nothing for SANP (fixed-k measures its cost table)."""

    def _follow_budget(self, policy: SANPPolicy, budget: float) -> None:
        """Before each fine-tuning step: SANP's cost follows the budget through lambda alone."""


class SANPStatic(SANP):
    """Table 3's STATIC: the saliency comes from a learned vector, so every sample is pruned alike."""

    name = "sanp_static"
    variant = "static"
    static = True


class SANPFixedK(SANP):
    """Table 3's FIXED K: no binarisation; every layer keeps the same fraction of channels (its top-k by
    saliency). On equal terms with SANP: the same warm-up (SANP's artifact), objective and lambda rule, and k
    follows the budget SANP's lambda steers toward, step by step (a cost-to-fraction table measured each epoch)."""

    name = "sanp_fixed_k"
    variant = "fixed_k"
    shares_artifacts_of = "sanp"
    # [choice] lambda never below 0: its cost is set by k, not by s, so a cost a little under the budget made a
    # negative lambda a reward for growing |s| that nothing checks (the default run of 2026-12-03 diverged on it
    # in both seeds: lambda0 78, NaN at step 72 of 351)
    densify = False
    no_pruning = None  # at budget 1.0 k must still pay for the SPMs: a whole channel of the narrowest layers

    def _on_epoch_start(self, net, data, budget, accountant, spm_macs, run):
        """The cost of each keep fraction, anew as the saliencies train: how many stream channels a block's
        output leaves active, and so the next conv's input cost, depends on how the samples' top-k differ."""
        net.policy.cost_table = cost_by_fraction(net, data, accountant, spm_macs)
        run.log.info("%s: every layer keeps %.4f of its channels at the budget", self.name,
                     fraction_for_cost(*net.policy.cost_table, budget))

    def _follow_budget(self, policy, budget):
        policy.keep_fraction = fraction_for_cost(*policy.cost_table, budget)


def schedule_lambda0(mean_saliency: float, filters: int, spec: TrainSpec, spm_lr_scale: float, total_steps: int,
                     share: float) -> float:
    """The lambda0 at which the L1 term alone would carry the mean saliency to 0 within `share` of the fine-tuning
    steps: through an SPM's output bias its gradient is lambda0 / N every step, which momentum SGD at the SPMs'
    scheduled rates turns into lr / (1 - momentum) per step."""
    return mean_saliency * filters / schedule_travel(spec, total_steps, max(1, round(share * total_steps)), spm_lr_scale)


def start_losses(net: GatedResNet, data: Dataset, filters: int, images: int = 512) -> tuple[float, float]:
    """Cross-entropy and mean |s| (the L1 term of eq. 9 without lambda) of the network as fine-tuning starts,
    on a random sample of training images with inference-time codes."""
    normalize = Normalizer(data.mean, data.std, next(net.parameters()).device)
    sample = data.sample(images)
    ce = mean_cross_entropy(net, data.train_x[sample], data.train_y[sample], normalize)
    return ce, float(net.policy.saliency_l1) / filters  # the L1 sum of that same forward


def costing(net: GatedResNet, data: Dataset) -> tuple[Accountant, float]:
    """The accountant of the backbone and the SPMs' per-sample MACs (measured once per training)."""
    image_shape = (data.in_channels, *data.image_size)
    return Accountant(net, image_shape), controller_macs(net, image_shape)


@torch.no_grad()
def cost_by_fraction(net: GatedResNet, data: Dataset, accountant: Accountant, spm_macs: float, points: int = 33,
                     images: int = 256) -> tuple[list[float], list[float]]:
    """(keep fractions, measured mean cost as a fraction of dense, SPMs included) at `points` fractions from 0 to 1,
    on a random sample of training images; the costs made non-decreasing (the cost only grows with the fraction)."""
    x = Normalizer(data.mean, data.std, next(net.parameters()).device)(data.train_x[data.sample(images)])
    was_training, fraction = net.training, net.policy.keep_fraction
    net.eval()
    fractions = [i / (points - 1) for i in range(points)]
    costs = []
    for f in fractions:
        net.policy.keep_fraction = max(f, 1e-6)
        costs.append((float(accountant.backbone_macs(net.run(x)[1]).mean()) + spm_macs) / accountant.dense_macs)
    net.train(was_training)
    net.policy.keep_fraction = fraction
    return fractions, list(itertools.accumulate(costs, max))


def fraction_for_cost(fractions: list[float], costs: list[float], budget: float) -> float:
    """The keep fraction whose cost is `budget`, interpolated linearly in the table (clamped to its ends)."""
    if budget <= costs[0]:
        return max(fractions[0], 1e-6)
    for (f0, c0), (f1, c1) in zip(zip(fractions, costs), zip(fractions[1:], costs[1:])):
        if budget <= c1:
            return f1 if c1 == c0 else f0 + (f1 - f0) * (budget - c0) / (c1 - c0)
    return fractions[-1]
