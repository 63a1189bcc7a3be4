-- Instances started on a git branch: the repository (a folder in the workspace), the branch
-- checked out in the instance's worktree, and the base a merge goes back into.
ALTER TABLE instances ADD COLUMN git_repo TEXT;
ALTER TABLE instances ADD COLUMN git_branch TEXT;
ALTER TABLE instances ADD COLUMN git_base TEXT;
