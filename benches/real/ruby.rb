# Real-program benchmark for ruby (cargo xtask bench --real).
# Models a Ruby back-end job: builds order objects from CSV text, groups and aggregates them
# in hashes, renders and re-parses JSON-like strings with string interpolation, sorts arrays
# of objects, and keeps a session store (a hash of hashes and arrays) under churn. Strings
# longer than 23 bytes, arrays, hashes and the garbage collector's pages come from malloc.
# Prints "ok <checksum>"; the checksum is the same under any correct allocator.

$seed = 12345
def rnd(n)
  $seed = ($seed * 1103515245 + 12345) % 2147483648
  ($seed >> 8) % n
end
$checksum = 0
def mix(x) = $checksum = ($checksum * 31 + x) % 2147483647

Order = Struct.new(:id, :customer, :city, :items, :total, :note)
Item = Struct.new(:sku, :qty, :price)

CITIES = %w[Tokyo Osaka Berlin Paris Lyon Austin Denver Lima Quito Oslo Bergen Porto]
FIRST = %w[Ann Bob Cid Dee Eve Fay Gus Hal Ivy Jon Kim Lou Max Ned Ola Pat]

3.times do |round|
  # CSV text in, objects out.
  lines = (1..30_000).map do |i|
    items = (0..rnd(5)).map { "SKU-#{rnd(2000)}:#{rnd(9) + 1}:#{rnd(10_000) / 100.0}" }.join("|")
    "#{i},#{FIRST[rnd(16)]} #{FIRST[rnd(16)]}son,#{CITIES[rnd(12)]},#{items},note #{'x' * rnd(60)}"
  end
  csv = lines.join("\n")
  orders = csv.each_line(chomp: true).map do |line|
    id, customer, city, items, note = line.split(",")
    items = items.split("|").map do |it|
      sku, qty, price = it.split(":")
      Item.new(sku, qty.to_i, price.to_f)
    end
    total = items.sum { |it| it.qty * it.price }.round(2)
    Order.new(id.to_i, customer, city, items, total, note)
  end

  # Group and aggregate.
  by_city = orders.group_by(&:city)
  summary = by_city.keys.sort.map do |city|
    list = by_city[city]
    skus = Hash.new(0)
    list.each { |o| o.items.each { |it| skus[it.sku] += it.qty } }
    top = skus.sort_by { |sku, qty| [-qty, sku] }.first(5)
    { city: city, orders: list.size, revenue: list.sum(&:total).round(2),
      top: top.map { |sku, qty| "#{sku}x#{qty}" } }
  end
  mix(summary.map(&:to_s).join.sum)

  # JSON-like rendering and parsing back.
  docs = orders.first(10_000).map do |o|
    items = o.items.map { |it| %({"sku":"#{it.sku}","qty":#{it.qty},"price":#{it.price}}) }.join(",")
    %({"id":#{o.id},"customer":"#{o.customer}","city":"#{o.city}","items":[#{items}],"total":#{o.total}})
  end
  parsed = docs.map do |d|
    h = {}
    d.scan(/"(\w+)":("[^"]*"|[\d.]+)/) { |k, v| (h[k] ||= []) << v.delete('"') }
    h
  end
  mix(parsed.sum { |h| h["sku"].size + h["id"].first.to_i })

  # Sorting arrays of objects.
  sorted = orders.sort_by { |o| [-o.total, o.customer, o.id] }
  mix(sorted.first(100).sum(&:id))
  mix(orders.max_by(3) { |o| o.items.size * 1000 + o.id }.sum(&:id))
end

# A session store under churn.
sessions = {}
ids = []
300_000.times do |i|
  key = "sess-#{rnd(50_000)}"
  s = sessions[key]
  if s
    s[:hits] += 1
    s[:trail] << "/page/#{i % 97}"
    s[:trail].shift if s[:trail].size > 20
    s[:data]["k#{i % 13}"] = "v" * (i % 50)
  else
    sessions[key] = { hits: 1, trail: ["/login"], data: { "user" => FIRST[i % 16] * 3 } }
    ids << key
    sessions.delete(ids.shift) if ids.size > 20_000
  end
end
mix(sessions.size)
mix(sessions.values.sum { |s| s[:hits] + s[:trail].size })

puts "ok #{$checksum}"
