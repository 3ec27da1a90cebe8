//! `weft lab store …`: rehearsing the loss of etcd members in a lab brought
//! up with `--store etcd --etcd-members N`.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use weft_lab::{Lab, LabError};

use super::{NameArg, say};

#[derive(Debug, Args)]
pub struct StoreArgs {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Show each etcd member: running or killed, partitioned or not, and
    /// which one leads.
    ///
    /// The leader is found with etcd's status API (`etcdctl endpoint status`
    /// run on the underlay): the member whose own id is the leader id. No
    /// leader means an election is under way or quorum is lost.
    Status(NameArg),

    /// Kill one etcd member with SIGKILL, as a crash or power cut would.
    ///
    /// Its data directory stays, so `weft lab store start MEMBER` brings it
    /// back into the cluster. With --leader, the member that leads right
    /// now is killed (and named), which forces an election: the agents'
    /// connections to it break and they carry on with the other members.
    /// Killing a majority of the members loses quorum: the agents keep
    /// their dataplane and report the store as unavailable until it
    /// returns.
    Kill(KillArgs),

    /// Start a killed etcd member again and wait until it serves.
    ///
    /// It rejoins with the membership its data records and catches up from
    /// the leader; "serves" means `etcdctl endpoint health` passes on it,
    /// which needs a quorum: when a majority is down, start enough members
    /// to form one. Starting a member that runs does nothing.
    Start(MemberArgs),

    /// Cut an etcd member off the underlay: its bridge port goes down while
    /// the process keeps running.
    ///
    /// Unlike a kill, nothing tells the agents: their connections to it
    /// simply go silent, so this rehearses a dead switch port or NIC. The
    /// member also loses its peers (it steps down if it led). `weft lab
    /// store heal MEMBER` undoes it.
    Partition(MemberArgs),

    /// Put a partitioned etcd member back on the underlay.
    ///
    /// Its port comes up again; the member catches up with the cluster by
    /// itself, and agents may use it again.
    Heal(MemberArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["leader", "member"])))]
struct KillArgs {
    #[command(flatten)]
    name: NameArg,
    /// Kill the member that leads now.
    #[arg(long)]
    leader: bool,
    /// The member to kill (etcd1, etcd2, …).
    member: Option<String>,
}

#[derive(Debug, Args)]
struct MemberArgs {
    #[command(flatten)]
    name: NameArg,
    /// The member (etcd1, etcd2, …), as `weft lab store status` lists them.
    member: String,
}

pub fn run(args: StoreArgs) -> Result<ExitCode, LabError> {
    match args.command {
        StoreCommand::Status(name) => {
            let lab = Lab::open(&name.name)?;
            for m in lab.etcd_member_status()? {
                say(&format!(
                    "{:<6} {:<26} {:<8} {}{}\n",
                    m.name,
                    m.client_url,
                    if m.running { "running" } else { "killed" },
                    if m.partitioned {
                        "partitioned"
                    } else {
                        "connected"
                    },
                    if m.leader { "  leader" } else { "" },
                ));
            }
        }
        StoreCommand::Kill(args) => {
            let mut lab = Lab::open(&args.name.name)?;
            match args.member {
                Some(member) if !args.leader => {
                    let killed = lab.kill_etcd_member(&member)?;
                    say(&if killed {
                        format!("killed etcd member {member}\n")
                    } else {
                        format!("etcd member {member} was not running\n")
                    });
                }
                _ => {
                    let leader = lab.kill_etcd_leader()?;
                    say(&format!("killed etcd member {leader}, the leader\n"));
                }
            }
        }
        StoreCommand::Start(args) => {
            let mut lab = Lab::open(&args.name.name)?;
            let started = lab.start_etcd_member(&args.member)?;
            say(&if started {
                format!("started etcd member {}: serving\n", args.member)
            } else {
                format!("etcd member {} already runs\n", args.member)
            });
        }
        StoreCommand::Partition(args) => {
            let mut lab = Lab::open(&args.name.name)?;
            lab.partition_etcd_member(&args.member)?;
            say(&format!(
                "etcd member {} is cut off the underlay (its process runs on)\n",
                args.member
            ));
        }
        StoreCommand::Heal(args) => {
            let mut lab = Lab::open(&args.name.name)?;
            lab.heal_etcd_member(&args.member)?;
            say(&format!(
                "etcd member {} is back on the underlay\n",
                args.member
            ));
        }
    }
    Ok(ExitCode::SUCCESS)
}
