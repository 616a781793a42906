"""Train and evaluate any task:

    python -m hrnet_jax.train --config configs/<file>.py:<arg> --workdir DIR [--config.key=value ...]

Rerunning the same command resumes from the latest checkpoint in DIR. Multi-host: automatic on Cloud TPU pods and
under SLURM, Open MPI and Kubernetes indexed jobs (``--distributed=mpi4py`` for any MPI through mpi4py); elsewhere
pass --coordinator_address, --num_processes and --process_id to every process. ``--distributed=off`` runs one
process whatever the environment says.
"""

from absl import app, flags
from ml_collections import config_flags

from hrnet_jax import cli

_CONFIG = config_flags.DEFINE_config_file("config", None, "Config file, e.g. configs/demo.py or configs/imagenet.py:w18"
                                          ".",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics.jsonl and TensorBoard events go.")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for multi-process runs.")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Number of processes (with --coordinator_address).")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's index (with --coordinator_address).")
_DISTRIBUTED = flags.DEFINE_enum("distributed", "auto", ["auto", "off", "mpi4py"],
                                 "auto: join a multi-process run when a coordinator is given or a cluster launcher "
                                 "is detected; mpi4py: through MPI; off: one process.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
  from hrnet_jax.engine import sharding, trainer  # pylint: disable=import-outside-toplevel

  sharding.initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value, _DISTRIBUTED.value)
  trainer.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
  if sharding.is_main_process():
    print(trainer.summary_line(_WORKDIR.value, _CONFIG.value.best_metric))


if __name__ == "__main__":
  cli.run(main)
