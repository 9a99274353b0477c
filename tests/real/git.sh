# program: git --version
set -euo pipefail
cd "$1"
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME="$1" LC_ALL=C
git init -q -b main repo
cd repo
git config user.name "Test" && git config user.email "test@example.invalid"
git config gc.auto 0
for i in $(seq 1 300); do
    mkdir -p "d$((i % 10))"
    seq "$i" $((i * 7)) > "d$((i % 10))/f$((i % 37)).txt"
    echo "commit $i" >> log.txt
    git add -A
    git commit -q -m "commit $i"
done
git gc -q --aggressive
git fsck --strict --no-progress
git log --oneline | wc -l
git rev-parse HEAD
git log --stat --format='%H %s' | sha256sum
git count-objects -v | grep -E '^(count|in-pack|packs)'
