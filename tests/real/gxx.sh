# program: c++ --version
set -euo pipefail
cd "$1"
cat > prog.cpp <<'CXX'
#include <algorithm>
#include <iostream>
#include <map>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <variant>
#include <vector>
int main() {
    std::map<std::string, std::vector<int>> m;
    for (int i = 0; i < 100000; i++) m["k" + std::to_string(i % 977)].push_back(i);
    std::vector<std::unique_ptr<std::string>> v;
    for (auto &[k, xs] : m) v.push_back(std::make_unique<std::string>(k + ":" + std::to_string(xs.size())));
    std::sort(v.begin(), v.end(), [](auto &a, auto &b) { return *a > *b; });
    std::variant<int, std::string> var = *v.front();
    std::optional<long> total = std::accumulate(m.begin(), m.end(), 0L, [](long s, auto &kv) { return s + kv.second.back(); });
    std::cout << std::get<std::string>(var) << " " << *v.back() << " " << *total << "\n";
}
CXX
c++ -std=c++17 -O2 -c prog.cpp -o prog.o
c++ -o prog prog.o
./prog
