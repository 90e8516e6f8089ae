// The JavaScript peers of flume's benchmark: flumedb (on flumelog-offset)
// and async-append-only-log, on the same data set (bench/gen.lua's JSON
// lines), each on a fresh folder. Prints "<peer> <row> <values per second>"
// lines; exits non-zero if anything fails.
//
//   node peers.js DATA.jsonl WORKDIR
//
// Rows, as flume's: append_batch (batches of 1000, each written before the
// next: flumelog-offset writes without fsync, async-append-only-log fsyncs
// each block it writes), rebuild_reduce (counting values per type:
// flumeview-reduce on flumedb; a stream of every record into the same
// reduce for async-append-only-log, which has no views), get_random (gets
// at random records, one after the other: min(N, 100,000) of them, since
// both peers read a block from the file for most of them at N = 1,000,000)
// and stream_scan (every value).
'use strict'
const fs = require('fs')
const path = require('path')
const pull = require('pull-stream')
const Flume = require('flumedb')
const OffsetLog = require('flumelog-offset')
const Reduce = require('flumeview-reduce')
const codec = require('flumecodec/json')
const AAOL = require('async-append-only-log')

const [dataPath, work] = process.argv.slice(2)
if (!dataPath || !work) {
  console.error('usage: node peers.js DATA.jsonl WORKDIR')
  process.exit(2)
}

function now () { return Number(process.hrtime.bigint()) / 1e9 }

function report (peer, row, n, secs) {
  console.log(`${peer} ${row} ${Math.round(n / secs)}`)
}

function fail (err) {
  console.error('peers:', err && err.stack ? err.stack : err)
  process.exit(1)
}

// Runs step(i, next) for i = 0..n-1 one after the other, then done(); a
// step may call next synchronously without growing the stack.
function series (n, step, done) {
  let i = 0; let sync = false; let again = false
  function next (err) {
    if (err) return fail(err)
    if (sync) { again = true; return }
    run()
  }
  function run () {
    while (i < n) {
      sync = true; again = false
      step(i++, next)
      sync = false
      if (!again) return
    }
    done()
  }
  run()
}

// The reduce both peers run: how many values of each type.
function countTypes (counts, value) {
  counts[value.type] = (counts[value.type] || 0) + 1
  return counts
}

function total (counts) {
  let t = 0
  for (const k in counts) t += counts[k]
  return t
}

// The i-th record of a random read order over n records (a 32-bit hash of
// i; the C and Lua sides use splitmix64, the distribution is what matters).
function randomOrder (n) {
  const order = new Uint32Array(n)
  for (let i = 0; i < n; i++) {
    let h = i + 0x9e3779b9 | 0
    h = Math.imul(h ^ (h >>> 16), 0x85ebca6b)
    h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35)
    h ^= h >>> 16
    order[i] = (h >>> 0) % n
  }
  return order
}

const values = fs.readFileSync(dataPath, 'utf8').split('\n')
  .filter((l) => l.length > 0).map((l) => JSON.parse(l))
const N = values.length
const BATCH = 1000
const GETS = Math.min(N, 100000)

function batches () {
  const out = []
  for (let i = 0; i < N; i += BATCH) out.push(values.slice(i, i + BATCH))
  return out
}

function flumedb (done) {
  const dir = path.join(work, 'flumedb')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, 'log.offset')
  const open = (ready) => Flume(OffsetLog(file, { codec }), ready)
  let db = open()
  const bs = batches()
  const t0 = now()
  series(bs.length, (i, next) => db.append(bs[i], next), () => {
    report('flumedb', 'append_batch', N, now() - t0)
    db.close(() => {
      db = open(false)
      db.use('types', Reduce(1, countTypes, null, null, {}))
      db.since.once(() => {
        const t1 = now()
        db.ready.set(true)
        db.types.get((err, counts) => {
          if (err) return fail(err)
          const t2 = now()
          if (total(counts) !== N) return fail('flumedb: reduce miscounted')
          report('flumedb', 'rebuild_reduce', N, t2 - t1)
          scanAndGet(db)
        })
      })
    })
  })

  function scanAndGet (db) {
    const offsets = []
    pull(db.stream({ seqs: true, values: false }),
      pull.drain((seq) => { offsets.push(seq) }, (err) => {
        if (err) return fail(err)
        if (offsets.length !== N) return fail('flumedb: offsets missing')
        const order = randomOrder(N)
        const t0 = now()
        series(GETS, (i, next) => db.get(offsets[order[i]], (err, v) => {
          if (err) return fail(err)
          if (v.seq !== order[i]) return fail('flumedb: wrong value')
          next()
        }), () => {
          report('flumedb', 'get_random', GETS, now() - t0)
          let n = 0
          const t1 = now()
          pull(db.stream({ seqs: false }), pull.drain(() => { n++ }, (err) => {
            if (err) return fail(err)
            const t2 = now()
            if (n !== N) return fail('flumedb: stream missed values')
            report('flumedb', 'stream_scan', N, t2 - t1)
            db.close(done)
          }))
        })
      }))
  }
}

function aaol (done) {
  const dir = path.join(work, 'aaol')
  fs.mkdirSync(dir, { recursive: true })
  const file = path.join(dir, 'log.aaol')
  const log = AAOL(file, { codec, writeTimeout: 1 })
  const bs = batches()
  const t0 = now()
  series(bs.length, (i, next) => log.append(bs[i], (err) => {
    if (err) return fail(err)
    log.onDrain(next)
  }), () => {
    report('aaol', 'append_batch', N, now() - t0)
    // every record through the same reduce
    let counts = {}
    const t1 = now()
    scan(true, (v) => { counts = countTypes(counts, v) }, () => {
      const t2 = now()
      if (total(counts) !== N) return fail('aaol: reduce miscounted')
      report('aaol', 'rebuild_reduce', N, t2 - t1)
      const offsets = []
      scan(false, (o) => { offsets.push(o) }, () => {
        if (offsets.length !== N) return fail('aaol: offsets missing')
        const order = randomOrder(N)
        const t3 = now()
        series(GETS, (i, next) => log.get(offsets[order[i]], (err, v) => {
          if (err) return fail(err)
          if (v.seq !== order[i]) return fail('aaol: wrong value')
          next()
        }), () => {
          report('aaol', 'get_random', GETS, now() - t3)
          let n = 0
          const t4 = now()
          scan(true, () => { n++ }, () => {
            const t5 = now()
            if (n !== N) return fail('aaol: stream missed values')
            report('aaol', 'stream_scan', N, t5 - t4)
            log.close(done)
          })
        })
      })
    })
  })

  // A push-stream over every record: values (decoded) or offsets.
  function scan (values, each, end) {
    log.stream({ offsets: !values, values }).pipe({
      paused: false,
      write: each,
      end (err) {
        if (err && err !== true) return fail(err)
        end()
      }
    })
  }
}

flumedb(() => aaol(() => process.exit(0)))
