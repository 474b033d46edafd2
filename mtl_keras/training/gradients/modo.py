"""MoDo: multi-objective gradient descent with one projected step on the weights per training step.

Chen et al., "Three-Way Trade-Off in Multi-Objective Learning: Optimization, Generalization and Conflict-Avoidance",
NeurIPS 2023.

Update rule: the weights lambda (on the simplex, 1/T at first) take one projected gradient step on MGDA's objective
1/2 ||g_lambda||^2 (+ rho/2 ||lambda||^2) each training step, lambda <- Proj_simplex(lambda - gamma (G + rho I)
lambda), and the update is g_lambda = sum_t lambda_t g_t with the new lambda. So lambda tracks MGDA's min-norm
weights slowly instead of solving for them each step. lambda is state: saved, backed up, mirrored.

Differences from the paper's algorithm, of the single-batch step: the paper estimates G from two independent
mini-batches and the update from a third (double sampling); here all come from the step's batch.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from mtl_keras.training.gradients.base import GradientMethod, project_to_simplex, register


@register
class MoDo(GradientMethod):
    """MoDo (Chen et al. 2023): `gamma` is the weights' step size, `rho` their ridge (defaults: LibMTL's).

    Example:

    >>> import tensorflow as tf
    >>> method = MoDo(gamma=0.1, rho=0.0)
    >>> _ = method.build_for_tasks(2)
    >>> gram = tf.constant([[1.0, 0.0], [0.0, 4.0]])  # lambda = proj((0.5, 0.5) - 0.1 (0.5, 2.0)) = (0.575, 0.425)
    >>> [round(float(a), 3) for a in method.coefficients(gram, tf.constant(0, tf.int64))]
    [0.575, 0.425]
    """

    name = "modo"

    def __init__(self, space: str | None = None, gamma: float = 0.001, rho: float = 0.1, update_every: int = 1):
        super().__init__(space, update_every)
        if not gamma > 0 or rho < 0:
            raise ValueError(f"MoDo: gamma must be > 0 and rho >= 0, got gamma={gamma}, rho={rho}.")
        self.gamma, self.rho = float(gamma), float(rho)

    def create_state(self, num_tasks):
        self.task_weights = self.state_variable("task_weights", (num_tasks,),
                                               keras.initializers.Constant(1.0 / num_tasks))

    def coefficients(self, gram, step):
        weights = tf.convert_to_tensor(self.task_weights)
        weights = project_to_simplex(weights - self.gamma * (tf.linalg.matvec(gram, weights) + self.rho * weights))
        self.stage(self.task_weights, weights)
        return weights

    def get_config(self):
        return {**super().get_config(), "gamma": self.gamma, "rho": self.rho}

