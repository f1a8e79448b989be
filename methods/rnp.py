"""RNP: Runtime Neural Pruning (Lin et al., NeurIPS 2017).

Each prunable conv's output channels are split into k contiguous groups; before the conv, a
decision network picks an action i (compute groups 1..i: a prefix) from the pooled current feature
map: a per-layer encoder, one RNN shared across layers, a per-layer head of k Q-values. Pruning is a
Markov decision process over the layers, trained by Q-learning with reward (i-1)*p per step and
-alpha*L_cls at the last; rounds of decision-network training (backbone fixed) alternate with
backbone fine-tuning under the network's greedy pruning (Algorithm 1). The first conv is not pruned.
Stated deviation (docs/choices.md): by default the Q-values learn Monte-Carlo returns with a per-step
baseline, from zero-initialised heads and exploration around the greedy policy; Algorithm 1's bootstrapped
targets learned nothing on a short schedule and stay available (`targets: bootstrap`).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from prunebench import stats
from prunebench.api import Method, UserError, copy_backbone
from prunebench.claims import (FAILS, NOT_COMPARABLE, Claim, Judgement, compare_at_costs, difference,
                               shape_verdict)
from prunebench.backbones import GatedResNet
from prunebench.data import Dataset, Normalizer
from prunebench.gates import ChannelGate, GatePolicy
from prunebench.io import save_torch
from prunebench.train import TrainSpec, backbone_cross_entropy, fit


def prefix_lengths(channels: int, groups: int) -> list[int]:
    """Channels computed by action i = 1..k: the first i of k contiguous groups (at least one channel)."""
    return [max(1, round(channels * (i + 1) / groups)) for i in range(groups)]


def step_rewards(actions: torch.Tensor, ce: torch.Tensor, penalty: float, alpha: float) -> torch.Tensor:
    """(N, T) rewards: (i-1)*p at every step (actions hold i-1), plus -alpha*L_cls at the last one."""
    rewards = actions.to(ce.dtype) * penalty
    rewards[:, -1] -= alpha * ce
    return rewards


def q_targets(rewards: torch.Tensor, next_max_q: torch.Tensor, gamma: float) -> torch.Tensor:
    """r_t + gamma * max_a Q'(s_{t+1}, a), with Q' the target network's; the last step is terminal.
    next_max_q[:, t] is max_a Q'(s_t, a), so step t bootstraps from column t + 1."""
    targets = rewards.clone()
    targets[:, :-1] += gamma * next_max_q[:, 1:]
    return targets


def mc_targets(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """(N, T) Monte-Carlo returns sum_{s >= t} gamma^(s - t) r_s minus their mean over the batch at each step:
    the episode's return is known exactly at its end, so nothing is bootstrapped, and the baseline (it does
    not depend on the action) centres the targets so that the heads learn the gaps between actions rather
    than the common level of -alpha * CE ([choice], see the class's hyperparameters)."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, -1])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns - returns.mean(0, keepdim=True)


def decision_loss(q_net: "DecisionNetwork", pooled: list[torch.Tensor], actions: torch.Tensor, y: torch.Tensor,
                  value_baseline: bool, delta: float) -> torch.Tensor:
    """Huber loss of the taken actions' Q-values against the targets y ([choice] Huber, as DQN: the squared TD
    error diverged, Q-loss 3e5; quadratic up to `delta`). With `value_baseline` the heads fit y - V(s) and the
    value heads V(s) fit y: the heads learn advantages, and how hard the image is stays in V ([choice])."""
    q, value = q_net.q_values(pooled, with_values=True) if value_baseline else (q_net.q_values(pooled), None)
    q = q.gather(2, actions[..., None]).squeeze(2)
    if value is None:
        return F.smooth_l1_loss(q, y, beta=delta)
    return F.smooth_l1_loss(q, y - value.detach(), beta=delta) + F.smooth_l1_loss(value, y, beta=delta)


def greedy_actions(q: torch.Tensor) -> torch.Tensor:
    """argmax over the last dimension with ties broken toward the larger action (the larger prefix): torch's
    argmax takes the first, which would make a network that has learned nothing prune the most."""
    k = q.shape[-1]
    return k - 1 - q.flip(-1).argmax(-1)


def soft_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * online."""
    with torch.no_grad():
        for t, o in zip(target.parameters(), online.parameters()):
            t.mul_(1 - tau).add_(o, alpha=tau)


class DecisionNetwork(nn.Module):
    """Per-layer encoder to a fixed-length embedding, one RNN shared across layers, per-layer Q-heads.

    [choice] an Elman RNN (tanh) written with linear layers: fvcore counts its cost like any other.
    Per-layer value heads V(s) serve training only (`value_baseline`); decisions use the Q-heads alone.
    """

    def __init__(self, in_channels: list[int], groups: int, embedding: int, hidden: int, zero_heads: bool = False):
        super().__init__()
        self.hidden = hidden
        self.encoders = nn.ModuleList(nn.Linear(c, embedding) for c in in_channels)
        self.rnn_input = nn.Linear(embedding, hidden)
        self.rnn_hidden = nn.Linear(hidden, hidden, bias=False)
        self.heads = nn.ModuleList(nn.Linear(hidden, groups) for _ in in_channels)
        self.values = nn.ModuleList(nn.Linear(hidden, 1) for _ in in_channels)
        if zero_heads:  # every Q-value 0: the untrained greedy policy keeps every group (ties: the larger prefix)
            for head in self.heads:
                nn.init.zeros_(head.weight)
                nn.init.zeros_(head.bias)

    def step(self, t: int, pooled: torch.Tensor, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Q-values of layer t from its pooled input and the RNN state; the next state."""
        state = torch.tanh(self.rnn_input(F.relu(self.encoders[t](pooled))) + self.rnn_hidden(state))
        return self.heads[t](state), state

    def q_values(self, pooled: list[torch.Tensor], with_values: bool = False):
        """(N, T, k) Q-values of a stored episode (one pooled input per layer); with (N, T) state values too."""
        state = pooled[0].new_zeros(pooled[0].shape[0], self.hidden)
        qs, values = [], []
        for t, p in enumerate(pooled):
            q, state = self.step(t, p, state)
            qs.append(q)
            if with_values:
                values.append(self.values[t](state).squeeze(1))
        return (torch.stack(qs, 1), torch.stack(values, 1)) if with_values else torch.stack(qs, 1)


class RNPPolicy(GatePolicy):
    """Asks the decision network for an action per gated conv; the gate keeps a prefix of channels."""

    def __init__(self, net: GatedResNet, units: list[str], groups: int, embedding: int, hidden: int,
                 zero_heads: bool = False):
        super().__init__()
        self.gated_units = frozenset(units)
        self.step_of = {unit: t for t, unit in enumerate(units)}
        self.q = DecisionNetwork([net.unit(u).conv.in_channels for u in units], groups, embedding, hidden, zero_heads)
        self.widths = [net.unit(u).out_channels for u in units]
        for t, width in enumerate(self.widths):
            self.register_buffer(f"lengths{t}", torch.tensor(prefix_lengths(width, groups)))
        self.epsilon = 0.0        # exploration rate (decision-network training only)
        self.q_bias = 0.0         # ours: added per extra group to the Q-values at test time (rnp_bias), in rewards
        self.reward_per_p = 1.0   # what p = 1 is worth in rewards (set by training): rnp_bias's bias is in p's units
        self.generator: torch.Generator | None = None  # seeded epsilon draws
        self.recording = False    # keep each step's pooled input and action (the replay buffer's episodes)
        self.episode = None
        self.state = None

    def begin(self, x):
        self.state = x.new_zeros(x.shape[0], self.q.hidden)
        self.episode = ([], []) if self.recording else None

    def channel_gate(self, unit, pooled):
        t = self.step_of[unit]
        q, self.state = self.q.step(t, pooled, self.state)
        k = q.shape[1]
        action = greedy_actions(q + self.q_bias * torch.arange(k, device=q.device, dtype=q.dtype))
        if self.epsilon > 0:
            n = q.shape[0]
            explore = torch.rand(n, generator=self.generator) < self.epsilon
            action = torch.where(explore.to(q.device), torch.randint(k, (n,), generator=self.generator).to(q.device),
                                 action)
        if self.episode is not None:
            self.episode[0].append(pooled.detach())
            self.episode[1].append(action)
        kept = getattr(self, f"lengths{t}")[action]
        mask = torch.arange(self.widths[t], device=q.device)[None, :] < kept[:, None]
        return ChannelGate(mask.to(q.dtype), None, mask, prefix=kept)


class ReplayBuffer:
    """Episodes (per-layer pooled inputs, actions, classification loss) of the current round."""

    def __init__(self, capacity: int, generator: torch.Generator):
        self.capacity, self.generator = capacity, generator
        self.pooled, self.actions, self.ce = None, None, None

    def __len__(self):
        return 0 if self.ce is None else len(self.ce)

    def add(self, pooled: list[torch.Tensor], actions: torch.Tensor, ce: torch.Tensor) -> None:
        """Append a batch of episodes; the oldest are dropped beyond the capacity."""
        if self.ce is None:
            self.pooled, self.actions, self.ce = list(pooled), actions, ce
        else:
            self.pooled = [torch.cat([old, new]) for old, new in zip(self.pooled, pooled)]
            self.actions, self.ce = torch.cat([self.actions, actions]), torch.cat([self.ce, ce])
        self.pooled = [p[-self.capacity:] for p in self.pooled]
        self.actions, self.ce = self.actions[-self.capacity:], self.ce[-self.capacity:]

    def sample(self, size: int):
        idx = torch.randint(len(self), (size,), generator=self.generator)
        return [p[idx] for p in self.pooled], self.actions[idx], self.ce[idx]


def pruned_units(net: GatedResNet) -> list[str]:
    """Every conv inside a residual branch, in execution order (the stem, the first conv, is not pruned)."""
    return [u for u in net.unit_names() if u.startswith("blocks.") and not u.endswith("shortcut")]


def _beats_random_actions(ev):
    """RNP is more accurate than its own fine-tuned backbone under random actions, RNP's frontier interpolated at
    the random-action points' MACs (paired over test images)."""
    if not ev.has("rnp", "rnp_random"):
        return None
    return shape_verdict(compare_at_costs(ev, "rnp", "rnp_random", at_points_of="rnp_random"))


def _penalty_trades_cost(ev):
    """A larger penalty per channel group (p further below 0) prunes more and does not buy accuracy: per step down
    in p, the mean MACs fall beyond the noise, and the accuracy does not rise beyond it (paired over test images,
    training noise from the replicated budget). Holm over the steps, for each half."""
    if not ev.has("rnp"):
        return None
    pts = ev.points("rnp").sort_values("train_budget", ascending=False)
    if len(pts) < 2:
        return Judgement(NOT_COMPARABLE, "one penalty ran: nothing to compare")
    at = [(r.train_budget, r.eval_budget) for r in pts.itertuples()]
    labels = [f"p {a:g} -> {b:g}" for (a, _), (b, _) in zip(at, at[1:])]
    macs = [ev.at_point("rnp", *p, value="macs") for p in at]
    correct = [ev.at_point("rnp", *p) for p in at]
    cost = shape_verdict([(lab, difference(x, y)) for lab, x, y in zip(labels, macs, macs[1:])],
                         where="of dense MACs saved,")
    gains = [difference(y, x) for x, y in zip(correct, correct[1:])]  # accuracy the larger penalty gained
    rose = [lab for lab, up in zip(labels, stats.holm([d.p_above() for d in gains])) if up]
    if not rose:
        return cost
    return Judgement(FAILS, f"{cost.reproduced}; accuracy rose beyond the noise at {', '.join(rose)}", cost.distance,
                     cost.noise, cost.seeds)


class RNP(Method):
    claims = (Claim("penalty-trades-cost", "the reward per channel group trades accuracy for speed: a larger penalty "
                    "prunes more, at every step between the penalties that ran", "RNP, the speed-accuracy trade-off",
                    "imagenet", "vgg16", published="(3x to 10x speed-up; a CIFAR figure too)",
                    check=_penalty_trades_cost),
              Claim("beats-random-actions", "the decision network's choices beat random actions at equal MACs (on "
                    "the same fine-tuned backbone)", "ours: a control for RNP's decision network", None, None,
                    check=_beats_random_actions),  # p = 0's point too: random actions cost ~0.5, between the penalties
              Claim("vgg16-imagenet", "VGG-16 on ImageNet: top-5 error +2.32/+3.23/+3.58/+4.89 pt at 3x/4x/5x/10x speed-up",
                    "RNP, ImageNet table", "imagenet", "vgg16", macs_frac=1 / 3,
                    published="+2.32 pt top-5 error at 1/3 of dense (3x)"),)

    name = "rnp"
    knob = "penalty"          # p < 0, the reward per extra channel group: more negative, fewer groups
    no_pruning = 0.0          # no penalty: the best policy keeps every group (the Q-function must learn it)
    no_pruning_learned = True
    deviations = ("Monte-Carlo decision targets less a learned state value, zero-initialised Q-heads, "
                  "epsilon 0.3 -> 0.05",
                  "p in units of a channel group's measured harm (penalty_unit, where set)")
    test_time_knob = False
    hyperparameters = {
        "groups": 4,          # k (starting values from a public reproduction of RNP)
        "embedding": 64,
        "hidden": 128,
        "rounds": 3,          # decision-network training + backbone fine-tuning, alternated
        "q_steps": 100,       # decision-network updates per round
        "rollout_batch": 128, # images played per update (their episodes enter the replay buffer)
        "q_batch": 256,       # episodes per Q-learning update
        "replay_capacity": 20000,
        # [choice] epsilon linear within each round from 0.3 to 0.05 (the reproduction: 1 to 0.1): exploration around
        # the current greedy policy, a few layers' actions changed per episode, so that one action's effect on the
        # return shows; with every action random (accuracy ~12 %) no layer's effect stands out of the noise
        "epsilon_start": 0.3,
        "epsilon_end": 0.05,
        "gamma": 0.999,
        "q_lr": 1e-3,         # Adam [choice] (the reproduction: 1e-4, which learns too little in a few hundred updates)
        "tau": 0.005,         # soft target-network update
        # alpha * L_cls ~ 1 (the reproduction's rule); null: alpha = 1 / the backbone's cross-entropy measured on training
        # images before the first round [choice: the pretrained backbone's, unpruned]
        "alpha": None,
        # [choice] the TD loss is quadratic up to this error (DQN: 1); returns here reach alpha * CE ~ 20-50, and
        # a Huber loss that is linear there fits their median, ~0 whatever the action (the paper: squared)
        "huber_delta": 1.0,
        # [choice] p is per step for a network of this many gated convs: p * this / T on a network of T (the
        # episode's total penalty then does not grow with depth); null: p as given, per step
        "penalty_layers": None,
        # [choice] p in units of one group's mean harm ("group_harm", _penalty_unit): -1 drops a group where
        # dropping it costs less than the average group, on any dataset (measured: the same absolute p pruned
        # Fashion-MNIST to 0.33 and CIFAR-10 to 0.15 of dense, whose narrowest network costs half as many alpha*CE
        # units); null: p in reward units, as the paper
        "penalty_unit": None,
        # [choice] "monte_carlo": each step's exact return minus the batch's mean return at that step (mc_targets), no
        # target network needed; or Algorithm 1's "bootstrap" (Q-learning: r_t + gamma max Q'(s_{t+1})), which learned
        # nothing in the default's 300 updates (greedy policy = random actions' cost, see docs/choices.md)
        "targets": "monte_carlo",
        # [choice] heads initialised at 0: the untrained greedy policy keeps every group (ties: the larger prefix)
        # rather than a random prefix per layer, and exploration starts from the dense network
        "zero_heads": True,
        # [choice] with Monte-Carlo targets (ignored with bootstrap), the heads learn the advantage y - V(s) over a
        # learned state value V(s) (a head per layer, fitted to y from every action taken there). Without it the
        # often-taken action's head also learns how hard the image is, while rarely tried actions stay near 0, so
        # on hard images an untried action wins the argmax: 150 updates at p = 0 cut the last conv to a quarter
        # (CIFAR-10)
        "value_baseline": True,
        "finetune": {"epochs": 1, "lr": 0.01, "schedule": "cosine"},
    }
    quick_hp = {"rounds": 1, "q_steps": 60, "rollout_batch": 32, "q_batch": 32, "finetune": {"epochs": 1, "batch_size": 64}}

    def budget_range(self, backbone):
        return (-10.0, 0.0)

    def training_stages(self, hp, budget):
        return {"finetune": hp["rounds"]}  # the Q-updates train the decision network alone: policy images

    def train(self, backbone, data, budget, hp, run):
        if hp["groups"] < 1 or hp["rounds"] < 1 or hp["q_steps"] < 1:
            raise UserError(f"{self.name}: groups, rounds and q_steps must be >= 1")
        if hp["targets"] not in ("bootstrap", "monte_carlo"):
            raise UserError(f"{self.name}: targets must be 'bootstrap' or 'monte_carlo', not {hp['targets']!r}")
        if hp["penalty_unit"] not in (None, "group_harm"):
            raise UserError(f"{self.name}: penalty_unit must be 'group_harm' or null, not {hp['penalty_unit']!r}")
        if hp["penalty_unit"] and hp["penalty_layers"]:  # the unit is per step of this network already
            raise UserError(f"{self.name}: penalty_unit and penalty_layers both rescale p by depth; set one of them")
        if not all(v is None or (isinstance(v, (int, float)) and v > 0) for v in (hp["alpha"], hp["penalty_layers"])):
            raise UserError(f"{self.name}: alpha and penalty_layers must be positive numbers or null")
        net = copy_backbone(backbone, run.device)
        policy = RNPPolicy(net, pruned_units(net), hp["groups"], hp["embedding"], hp["hidden"],
                           hp["zero_heads"]).to(run.device)
        net.policy = policy
        target = copy.deepcopy(policy.q)
        optimizer = torch.optim.Adam(policy.q.parameters(), lr=hp["q_lr"])
        draws = torch.Generator().manual_seed(run.seed * 1_000_003 + 17)  # batches and replay samples
        policy.generator = torch.Generator().manual_seed(run.seed * 1_000_003 + 29)  # epsilon draws
        # alpha and the penalty's unit from the pretrained backbone, before a resumed round's fine-tuning could
        # change them
        full = backbone_cross_entropy(net, data, run.seed)
        hp = {**hp, "alpha": hp["alpha"] or 1 / full}
        policy.reward_per_p = self._penalty_unit(net, policy, data, hp, full, run)
        if hp["penalty_layers"]:
            policy.reward_per_p *= hp["penalty_layers"] / len(policy.widths)
        hp["penalty"] = float(budget) * policy.reward_per_p
        start = self._resume(run, net, target, optimizer, draws, policy)
        run.log.info("rnp: alpha %.3f, penalty %.4g per group and step over %d gated convs", hp["alpha"],
                     hp["penalty"], len(policy.widths))
        for round_ in range(start, hp["rounds"]):
            self._learn_decisions(net, target, optimizer, draws, data, hp, run, round_)
            self._finetune(net, data, hp, run, round_)
            self._save(run, round_, net, target, optimizer, draws, policy)
        policy.epsilon = 0.0
        return net.eval()

    def _penalty_unit(self, net, policy, data, hp, full: float, run) -> float:
        """What p = -1 is worth in rewards: 1 (the paper's absolute p) or, with `penalty_unit: group_harm`, the
        mean harm of one group, alpha * (CE at the narrowest action everywhere - CE unpruned `full`) / (T * (k - 1))."""
        if hp["penalty_unit"] is None:
            return 1.0
        saved, policy.q_bias = policy.q_bias, -1e6  # outweighs any Q-value: the first group everywhere
        try:
            narrowest = backbone_cross_entropy(net, data, run.seed, policy=policy)
        finally:
            policy.q_bias = saved
        if narrowest <= full or hp["groups"] < 2:
            raise UserError(f"{self.name}: penalty_unit group_harm needs a narrowest network worse than the unpruned "
                            f"one (cross-entropy {narrowest:.4f} against {full:.4f}, {hp['groups']} groups); set "
                            "penalty_unit: null to give p in reward units")
        unit = hp["alpha"] * (narrowest - full) / (len(policy.widths) * (hp["groups"] - 1))
        run.log.info("rnp: cross-entropy %.4f unpruned, %.4f at the narrowest actions: p's unit %.4g", full,
                     narrowest, unit)
        return unit

    def _learn_decisions(self, net, target, optimizer, draws, data: Dataset, hp, run, round_):
        """Q-learning of the decision network, backbone fixed (eval mode); a fresh replay buffer per round."""
        policy = net.policy
        net.eval()
        device = next(net.parameters()).device
        normalize = Normalizer(data.mean, data.std, device)
        buffer = ReplayBuffer(hp["replay_capacity"], draws)
        advantages = hp["value_baseline"] and hp["targets"] == "monte_carlo"  # bootstrapping needs Q-values
        losses = []
        for step in range(hp["q_steps"]):
            policy.epsilon = hp["epsilon_start"] + (hp["epsilon_end"] - hp["epsilon_start"]) * step / max(hp["q_steps"] - 1, 1)
            idx = torch.randint(len(data.train_x), (hp["rollout_batch"],), generator=draws)
            policy.recording = True
            with torch.no_grad():
                ce = F.cross_entropy(net(normalize(data.train_x[idx])), data.train_y[idx].to(device), reduction="none")
            policy.recording = False
            buffer.add(policy.episode[0], torch.stack(policy.episode[1], 1), ce)
            run.count_images({"policy": len(idx)})  # a rollout: the backbone's forward under the decisions
            pooled, actions, ce = buffer.sample(hp["q_batch"])
            with torch.no_grad():
                rewards = step_rewards(actions, ce, hp["penalty"], hp["alpha"])
                y = mc_targets(rewards, hp["gamma"]) if hp["targets"] == "monte_carlo" else \
                    q_targets(rewards, target.q_values(pooled).max(2).values, hp["gamma"])
            loss = decision_loss(policy.q, pooled, actions, y, advantages, hp["huber_delta"])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            soft_update(target, policy.q, hp["tau"])
            losses.append(loss.item())
        policy.epsilon = 0.0
        run.log.info("rnp round %d: Q-loss %.4f (last 10 updates), %d episodes", round_ + 1,
                     sum(losses[-10:]) / len(losses[-10:]), len(buffer))

    def _finetune(self, net, data, hp, run, round_):
        """The backbone with cross-entropy under the decision network's greedy pruning (network fixed)."""
        for p in net.policy.parameters():
            p.requires_grad_(False)
        try:
            fit(net, data, TrainSpec.from_dict(hp["finetune"], "rnp.finetune"), run, name=f"rnp-finetune-{round_}",
                params=net.backbone_parameters())
        finally:
            for p in net.policy.parameters():
                p.requires_grad_(True)

    # --- resumable rounds

    def _save(self, run, round_, net, target, optimizer, draws, policy):
        path = run.checkpoint("rnp-rounds")
        if path is not None:
            save_torch({"round": round_, "job": run.identity, "net": net.state_dict(), "target": target.state_dict(),
                        "optimizer": optimizer.state_dict(), "draws": draws.get_state(),
                        "epsilon_draws": policy.generator.get_state(), "images": dict(run.images)}, path)

    def _resume(self, run, net, target, optimizer, draws, policy) -> int:
        path = run.checkpoint("rnp-rounds")
        if path is None or not path.exists():
            return 0
        state = torch.load(path, map_location="cpu", weights_only=False)
        if state["job"] != run.identity:
            return 0
        net.load_state_dict(state["net"])
        target.load_state_dict(state["target"])
        optimizer.load_state_dict(state["optimizer"])
        draws.set_state(state["draws"])
        policy.generator.set_state(state["epsilon_draws"])
        run.images.update(state["images"])  # the finished rounds' images, counted before the interruption
        run.log.info("rnp: resuming after round %d", state["round"] + 1)
        return state["round"] + 1


class RNPBias(RNP):
    """Ours, not the paper's: `rnp`'s models with a bias b added per extra group to the Q-values at
    test time, swept at evaluation; one model becomes a curve (RNP's claim of a run-time knob). b is in
    p's units: each decision is taken as if the step's penalty were p + b (b = -p keeps what p = 0 keeps)."""

    name = "rnp_bias"
    knob = "q_bias"
    no_pruning = None
    test_time_knob = True
    derived_from = "rnp"
    ours = True

    def budget_range(self, backbone):
        return (-10.0, 10.0)

    def derive(self, net, data, hp, run):
        return net

    def configure(self, net, budget):
        unit = getattr(net.policy, "reward_per_p", None)
        if unit is None:
            raise UserError("rnp_bias: this rnp model does not record its penalty's unit (trained by an older "
                            "version); delete its model.pt and re-run its training")
        net.policy.q_bias = float(budget) * unit


class RNPRandom(RNP):
    """Ours, a control (not the paper's): `rnp`'s fine-tuned backbone under uniformly random actions (each gated
    conv a random prefix of its groups, ~0.5 of dense), so that "the decision network beats random actions"
    separates the learned decisions from the fine-tuning."""

    name = "rnp_random"
    no_pruning = None
    no_pruning_learned = False
    derived_from = "rnp"
    ours = True
    claims = ()

    def derive(self, net, data, hp, run):
        net.policy.epsilon = 1.0  # every action drawn uniformly, from a generator seeded by the run
        net.policy.generator = torch.Generator().manual_seed((run.seed if run is not None else 0) * 1_000_003 + 31)
        return net.eval()
