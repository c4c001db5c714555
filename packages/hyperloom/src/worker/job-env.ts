/**
 * A worker started inside a cluster job (Slurm or PBS) takes its cpus and its id from the job's
 * environment, so `srun hyperloom worker ...` and the allocator's jobs need no `--cpus`.
 */

/** What the job's environment says about the worker. */
export interface JobEnvironment {
  manager: "slurm" | "pbs";
  /** The job id (`SLURM_JOB_ID`, `PBS_JOBID`): the server matches the worker to its queue's job by it. */
  jobId: string;
  /** Which of the job's tasks this worker is (`SLURM_PROCID`), when there are several. */
  task?: string;
  /** Cpus the job gives this worker, when the environment says. */
  cpus?: number;
}

/**
 * Reads the job's environment. Slurm: inside a step (`srun`), `SLURM_CPUS_PER_TASK` when set (several
 * workers may share a node), else `SLURM_CPUS_ON_NODE`, else the first count of
 * `SLURM_JOB_CPUS_PER_NODE` (`"4(x2),2"`). PBS: `NCPUS` (PBS Professional) or `PBS_NUM_PPN` (Torque).
 */
export function jobEnvironment(env: NodeJS.ProcessEnv = process.env): JobEnvironment | undefined {
  const int = (v: string | undefined): number | undefined => {
    const m = v === undefined ? null : /^\s*(\d+)/.exec(v);
    const n = m ? Number(m[1]) : NaN;
    return Number.isInteger(n) && n > 0 ? n : undefined;
  };
  if (env.SLURM_JOB_ID) {
    const inStep = env.SLURM_STEP_ID !== undefined && env.SLURM_STEP_ID !== "batch";
    const cpus = (inStep ? int(env.SLURM_CPUS_PER_TASK) : undefined) ?? int(env.SLURM_CPUS_ON_NODE) ?? int(env.SLURM_JOB_CPUS_PER_NODE);
    return {
      manager: "slurm",
      jobId: env.SLURM_JOB_ID,
      ...(inStep && env.SLURM_PROCID !== undefined ? { task: env.SLURM_PROCID } : {}),
      ...(cpus !== undefined ? { cpus } : {}),
    };
  }
  if (env.PBS_JOBID) {
    const cpus = int(env.NCPUS) ?? int(env.PBS_NUM_PPN);
    return { manager: "pbs", jobId: env.PBS_JOBID, ...(cpus !== undefined ? { cpus } : {}) };
  }
  return undefined;
}
