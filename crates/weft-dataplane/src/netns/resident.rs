//! A thread that stays in a namespace and runs the work sent to it, for
//! callers that go back to the same namespace many times (a benchmark's
//! netlink watcher, its etcd client, the rules tests): entering once keeps
//! state that belongs there (a runtime, sockets) alive between calls.

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::mpsc;
use std::thread::JoinHandle;

use super::{Netns, NetnsError, enter};

type Job<S> = Box<dyn FnOnce(&mut S) + Send>;

/// A thread inside a namespace holding state `S` built there; [`run`]
/// hands it jobs one at a time. `S` never leaves the thread, so it need
/// not be `Send` (a current-thread runtime, a netlink connection).
///
/// [`run`]: Resident::run
pub struct Resident<S> {
    jobs: Option<mpsc::Sender<Job<S>>>,
    thread: Option<JoinHandle<()>>,
    tid: i32,
}

impl<S: 'static> Resident<S> {
    /// Starts the thread, enters `target` and builds the state there with
    /// `setup`. The outer error is the namespace's; the inner one is
    /// `setup`'s.
    pub fn start<E: Send + 'static>(
        target: Netns,
        setup: impl FnOnce() -> Result<S, E> + Send + 'static,
    ) -> Result<Result<Resident<S>, E>, NetnsError> {
        let (jobs, inbox) = mpsc::channel::<Job<S>>();
        let (ready, started) = mpsc::channel::<Result<Result<i32, E>, NetnsError>>();
        let thread = std::thread::spawn(move || {
            if let Err(e) = enter(&target) {
                let _ = ready.send(Err(e));
                return;
            }
            let mut state = match setup() {
                Ok(state) => state,
                Err(e) => {
                    let _ = ready.send(Ok(Err(e)));
                    return;
                }
            };
            let _ = ready.send(Ok(Ok(nix::unistd::gettid().as_raw())));
            for job in inbox {
                job(&mut state);
            }
        });
        let started = started.recv().map_err(|_| NetnsError::ResidentGone)?;
        let finish = |tid| Resident {
            jobs: Some(jobs),
            thread: Some(thread),
            tid,
        };
        Ok(started?.map(finish))
    }

    /// The thread's id: `ip link set DEV netns TID` moves a device into
    /// the namespace.
    pub fn tid(&self) -> i32 {
        self.tid
    }

    /// Runs `job` on the thread with its state and waits for the result. A
    /// panic in `job` is raised again here; the thread goes on serving.
    pub fn run<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<R, NetnsError> {
        let (reply, answer) = mpsc::channel();
        self.hand(Box::new(move |state| {
            let _ = reply.send(catch_unwind(AssertUnwindSafe(|| job(state))));
        }))?;
        match answer.recv().map_err(|_| NetnsError::ResidentGone)? {
            Ok(result) => Ok(result),
            Err(panic) => resume_unwind(panic),
        }
    }

    /// Hands `job` to the thread without waiting, for a caller that acts
    /// meanwhile (starts the agent whose work the job watches). The result
    /// comes on the receiver; a job that panicked closes it instead.
    pub fn submit<R: Send + 'static>(
        &self,
        job: impl FnOnce(&mut S) -> R + Send + 'static,
    ) -> Result<mpsc::Receiver<R>, NetnsError> {
        let (reply, answer) = mpsc::channel();
        self.hand(Box::new(move |state| {
            if let Ok(result) = catch_unwind(AssertUnwindSafe(|| job(state))) {
                let _ = reply.send(result);
            }
        }))?;
        Ok(answer)
    }

    fn hand(&self, job: Job<S>) -> Result<(), NetnsError> {
        self.jobs
            .as_ref()
            .ok_or(NetnsError::ResidentGone)?
            .send(job)
            .map_err(|_| NetnsError::ResidentGone)
    }
}

impl<S> Drop for Resident<S> {
    /// Closes the inbox and waits for the thread, so the namespace's state
    /// (and a fresh namespace itself) is gone when this returns.
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These enter namespaces: without root they fail, saying so (the
    /// `unprivileged` nextest profile leaves them out, visibly).
    fn require_root() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "needs root (setns): run as root, or use `cargo nextest run --profile unprivileged`"
        );
    }

    #[test]
    fn state_built_in_the_namespace_stays_there_between_jobs() {
        require_root();
        let host = std::fs::read_link("/proc/thread-self/ns/net").unwrap();
        let resident = Resident::start(Netns::Fresh, || {
            std::fs::read_link("/proc/thread-self/ns/net")
        })
        .unwrap()
        .unwrap();
        let (built, now) = resident
            .run(|built| {
                (
                    built.clone(),
                    std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
                )
            })
            .unwrap();
        assert_ne!(built, host, "the state was built in the caller's namespace");
        assert_eq!(built, now, "a later job ran in another namespace");
        assert_eq!(
            std::fs::read_link("/proc/thread-self/ns/net").unwrap(),
            host
        );
    }

    #[test]
    fn a_failed_setup_is_returned_and_a_panicking_job_is_raised_again() {
        require_root();
        let failed = Resident::<()>::start(Netns::Fresh, || Err("no state"));
        assert!(matches!(failed, Ok(Err("no state"))));
        let resident = Resident::start(Netns::Fresh, || Ok::<u32, ()>(1))
            .unwrap()
            .unwrap();
        let raised = catch_unwind(AssertUnwindSafe(|| {
            resident.run(|_| -> u32 { panic!("job failed") })
        }));
        assert!(raised.is_err());
        assert_eq!(resident.run(|n| *n + 1).unwrap(), 2);
        let lost = resident
            .submit(|_| -> u32 { panic!("job failed") })
            .unwrap();
        assert!(lost.recv().is_err(), "a panicked job's answer must close");
        assert_eq!(resident.submit(|n| *n + 2).unwrap().recv().unwrap(), 3);
    }
}
