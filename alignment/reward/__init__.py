"""The reward model: what it reads, what it is, how it is trained, scored and checked.

* :mod:`~alignment.reward.encoding`: (prompt, response) text -> reward-model inputs, for training and
  scoring alike (PPO uses it too);
* :mod:`~alignment.reward.model`: the scalar-head model, mean pooling, loading, freezing layers;
* :mod:`~alignment.reward.data`: the preference pairs it is trained and safety-checked on;
* :mod:`~alignment.reward.trainer`: TRL's RewardTrainer with a head learning rate, the linear-probe head;
* :mod:`~alignment.reward.scorer`: scoring text with a trained model (no TRL: what PPO loads);
* :mod:`~alignment.reward.evaluation`: pair accuracy, calibration, gold agreement, normalisation statistics.

Nothing here imports :mod:`alignment.ppo`: the dependency runs from PPO to the reward model.
"""
