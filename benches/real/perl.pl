# Real-program benchmark for perl (cargo xtask bench --real).
# Models a log-processing script: generates web-server access log lines, parses them with
# regular expressions and split, aggregates them in hashes of arrays and hashes of hashes,
# sorts the results several ways and writes a report with join/sprintf; then a word index
# over generated text (split, lc, substitutions, sort). Strings, scalars, arrays and hash
# entries all come from malloc. Prints "ok <checksum>"; the checksum is the same under any
# correct allocator.
use strict;
use warnings;

my $seed = 12345;
sub rnd { my ($n) = @_; $seed = ($seed * 1103515245 + 12345) % 2147483648; return ($seed >> 8) % $n; }
my $checksum = 0;
sub mix { $checksum = ($checksum * 31 + $_[0]) % 2147483647; }

my @paths = map { "/" . join("/", ("api", "static", "users", "items", "search")[$_ % 5], "page$_") } 0 .. 199;
my @agents = ("Mozilla/5.0 (X11; Linux x86_64)", "curl/7.88.1", "Wget/1.21", "python-requests/2.28",
              "Mozilla/5.0 (Windows NT 10.0; Win64; x64)");
my @methods = ("GET", "GET", "GET", "POST", "PUT", "DELETE");

for my $round (1 .. 4) {
    # Generate the log.
    my @log;
    for my $i (1 .. 60000) {
        my $ip = join(".", 10, rnd(4), rnd(256), rnd(256));
        my $path = $paths[rnd(scalar @paths)];
        $path .= "?q=" . ("x" x rnd(40)) . "&id=" . rnd(100000) if rnd(3) == 0;
        push @log, sprintf('%s - - [%02d/Dec/2026:%02d:%02d:%02d +0000] "%s %s HTTP/1.1" %d %d "-" "%s"',
            $ip, $round, rnd(24), rnd(60), rnd(60), $methods[rnd(6)], $path,
            (200, 200, 200, 304, 404, 500)[rnd(6)], rnd(50000), $agents[rnd(5)]);
    }
    my $text = join("\n", @log) . "\n";
    @log = ();

    # Parse and aggregate.
    my (%by_ip, %by_path, %status, %agent_bytes);
    for my $line (split /\n/, $text) {
        $line =~ /^(\S+) \S+ \S+ \[([^\]]+)\] "(\w+) (\S+) [^"]*" (\d+) (\d+) "[^"]*" "([^"]*)"$/
            or die "unparsed line: $line";
        my ($ip, $time, $method, $url, $code, $bytes, $agent) = ($1, $2, $3, $4, $5, $6, $7);
        my ($path, $query) = split /\?/, $url, 2;
        my %params = map { split /=/, $_, 2 } split /&/, ($query // "");
        push @{ $by_ip{$ip} }, [$time, $method, $path, $code, $bytes];
        my $p = $by_path{$path} //= { hits => 0, bytes => 0, methods => {}, ids => [] };
        $p->{hits}++;
        $p->{bytes} += $bytes;
        $p->{methods}{$method}++;
        push @{ $p->{ids} }, $params{id} if defined $params{id};
        $status{$code}++;
        $agent_bytes{ (split /[\/ ]/, $agent)[0] } += $bytes;
    }

    # Reports, sorted several ways.
    my @top_ips = (sort { @{ $by_ip{$b} } <=> @{ $by_ip{$a} } || $a cmp $b } keys %by_ip)[0 .. 99];
    my @report;
    for my $ip (@top_ips) {
        my @reqs = sort { $a->[0] cmp $b->[0] || $a->[2] cmp $b->[2] } @{ $by_ip{$ip} };
        push @report, join(",", $ip, scalar @reqs, map { "$_->[1]:$_->[2]" } @reqs[0 .. 2]);
    }
    for my $path (sort { $by_path{$b}{bytes} <=> $by_path{$a}{bytes} || $a cmp $b } keys %by_path) {
        my $p = $by_path{$path};
        my @ids = sort { $a <=> $b } @{ $p->{ids} };
        push @report, sprintf("%-30s %8d %10d %s %s", $path, $p->{hits}, $p->{bytes},
            join("/", map { "$_=$p->{methods}{$_}" } sort keys %{ $p->{methods} }),
            join(" ", @ids[0 .. ($#ids < 4 ? $#ids : 4)]));
    }
    push @report, map { "$_ $status{$_}" } sort keys %status;
    push @report, map { "$_ $agent_bytes{$_}" } sort keys %agent_bytes;
    my $out = join("\n", @report);
    mix(length $out);
    mix(unpack("%32C*", $out));
}

# A word index over generated prose.
my @syll = qw(ka lo mi ne ru sa to vi wen dor ath el ing ost un);
my @words = map { join("", map { $syll[rnd(scalar @syll)] } 0 .. rnd(4)) } 1 .. 3000;
for my $round (1 .. 3) {
    my @paras;
    for (1 .. 4000) {
        my @sentence = map { $words[rnd(scalar @words)] } 0 .. 8 + rnd(20);
        $sentence[0] = ucfirst $sentence[0];
        push @paras, join(" ", @sentence) . ".";
    }
    my $doc = join("\n\n", @paras);
    (my $lower = lc $doc) =~ s/[^a-z\s]//g;
    my (%count, %first);
    my $pos = 0;
    for my $w (split /\s+/, $lower) {
        $count{$w}++;
        $first{$w} //= $pos;
        $pos++;
    }
    my @ranked = sort { $count{$b} <=> $count{$a} || $a cmp $b } keys %count;
    my $index = join(";", map { "$_:$count{$_}:$first{$_}" } @ranked);
    $doc =~ s/\b(\w)(\w*)\b/\U$1\E$2/g;
    mix(length $index);
    mix(unpack("%32C*", $index . $doc));
}

print "ok $checksum\n";
