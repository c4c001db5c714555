import { test } from "uvu";
import * as assert from "uvu/assert";
import { jobEnvironment } from "./job-env.js";

test("a worker's cpus and id from its job's environment", () => {
  assert.is(jobEnvironment({}), undefined);
  // sbatch's batch step: the node's cpus.
  assert.equal(jobEnvironment({ SLURM_JOB_ID: "12", SLURM_CPUS_ON_NODE: "8", SLURM_JOB_CPUS_PER_NODE: "8(x2)" }), { manager: "slurm", jobId: "12", cpus: 8 });
  // An srun step with two tasks per node: the task's cpus.
  assert.equal(jobEnvironment({ SLURM_JOB_ID: "12", SLURM_STEP_ID: "0", SLURM_PROCID: "3", SLURM_CPUS_PER_TASK: "4", SLURM_CPUS_ON_NODE: "8" }), {
    manager: "slurm",
    jobId: "12",
    task: "3",
    cpus: 4,
  });
  assert.equal(jobEnvironment({ SLURM_JOB_ID: "13", SLURM_JOB_CPUS_PER_NODE: "4(x2),2" }), { manager: "slurm", jobId: "13", cpus: 4 });
  assert.equal(jobEnvironment({ PBS_JOBID: "1042.pbs-head", NCPUS: "16" }), { manager: "pbs", jobId: "1042.pbs-head", cpus: 16 });
  assert.equal(jobEnvironment({ PBS_JOBID: "7.torque", PBS_NUM_PPN: "2" }), { manager: "pbs", jobId: "7.torque", cpus: 2 });
});

test.run();
