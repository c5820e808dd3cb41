"""Git: the run's work tree, checkpoints and bringing results back."""

from kcode.vcs.apply import ApplyReport, apply_result
from kcode.vcs.git import git, repo_root
from kcode.vcs.workspace import CheckpointInfo, Workspace, snapshot_commit

__all__ = ["ApplyReport", "apply_result", "git", "repo_root", "CheckpointInfo", "Workspace", "snapshot_commit"]
