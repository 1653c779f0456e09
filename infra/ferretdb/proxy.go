// proxy.go: a small MongoDB wire-protocol proxy in front of the embedded
// FerretDB that serialises write commands.
//
// Why it exists
//
// FerretDB 1.24 with the SQLite backend executes update, findAndModify (and
// thus $inc, $push, $pullAll, ...) as "read the document, apply the update in
// Go, write the whole document back", without any compare-and-swap or
// transaction around the cycle. Two connections updating the same document at
// the same time therefore interleave their cycles and one update silently
// overwrites the other: 3 processes x 500 concurrent
// update_one({_id: 1}, {$inc: {n: 1}}, upsert=True) ended with n=933 instead
// of 1500 (see infra/README.md for the figures). Our services rely on
// MongoDB's per-document atomicity (outbox relay $pullAll racing API
// $set/$push, $inc counters), so that is not acceptable even locally.
//
// What it does
//
// FerretDB itself listens only on an internal Unix socket. This proxy serves
// the public TCP address. Every client connection gets its own dedicated
// backend connection to FerretDB, and messages are relayed strictly one
// request / one reply at a time (MongoDB drivers never pipeline requests on a
// connection). For OP_MSG requests the proxy reads the command name (the first
// key of the section kind 0 document) and its "$db"; if it is a command that
// modifies data (see writeCommands), that database's mutex is held from
// forwarding the request until FerretDB's reply has been completely read.
// FerretDB handles a connection's requests sequentially and answers only after
// the write is done, so no two write commands ever run inside FerretDB on the
// same database at the same time and no read-modify-write cycles can
// interleave. Reads (find, aggregate, getMore, count, hello, ...) are not
// serialised.
//
// Why one mutex per database and not one for the whole server: a document
// lives in exactly one database (one SQLite file in FerretDB), so this is
// enough for per-document atomicity; and FerretDB 1.24 has write commands that
// never finish: an "update" command with 100 or more statements that each
// match a document (e.g. bulk_write of >= 100 UpdateOne) deadlocks inside
// FerretDB (msg_update.go defers closing every statement's query cursor to the
// end of the command, each holds one of the database's 100 pooled SQLite
// connections, and statement 100 waits forever for the 101st). That wedges
// the database concerned with or without this proxy; a global mutex would
// turn it into a write outage of the whole server. A write that holds a mutex
// for long is logged (slowWriteWarning) so such hangs are visible.
//
// The price: writes to one database are executed one after another. FerretDB
// on SQLite already serialises the actual writes of a database file, so the
// measured throughput difference is small (see infra/README.md).
//
// Wire protocol details handled here
//
//   - Standard header: int32 messageLength, requestID, responseTo, opCode,
//     little-endian. Messages larger than 48 MB (MongoDB's
//     maxMessageSizeBytes) are refused and the connection is closed.
//   - OP_MSG (2013): flagBits, then sections (kind 0: one BSON document;
//     kind 1: int32 size, cstring identifier, BSON documents), then a CRC-32C
//     if checksumPresent (bit 0) is set. Only the command name is looked at;
//     messages are forwarded byte for byte.
//   - moreToCome (bit 1) on a request: the client expects no reply
//     (unacknowledged writes, w=0). FerretDB 1.24 ignores the flag and replies
//     anyway, which would desynchronise the client; and for a write we must
//     know when it is finished before releasing the mutex. So the proxy then
//     sends its own {ping: 1} on the backend connection and reads (and drops)
//     every reply up to and including the ping's: that swallows FerretDB's
//     stray reply and proves the write has completed.
//   - moreToCome on a reply (exhaust cursors, requested by the client with
//     exhaustAllowed): keep relaying replies until one without the flag. The
//     mutex, if held, is released after the first reply is read.
//   - OP_QUERY (2004, the legacy isMaster/hello handshake) and any other
//     opcode are relayed unchanged without the mutex; OP_COMPRESSED (2012) is
//     locked to be safe, as the command inside cannot be seen (FerretDB 1.24
//     neither advertises nor accepts compression, so drivers do not send it).
//   - A malformed OP_MSG whose command name cannot be determined is treated
//     as a write (it costs nothing; FerretDB will answer with an error). A
//     write without "$db" (which FerretDB rejects) is locked under "".
//
// Reads use a bufio.Reader per socket (no per-byte syscalls); each complete
// message is written with a single Write call. Closing either side closes the
// other: a goroutine per connection reads the backend, so FerretDB closing the
// connection is noticed immediately, not only at the next request.

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// MongoDB's maxMessageSizeBytes.
	maxMessageSize = 48_000_000

	headerLen = 16 // messageLength, requestID, responseTo, opCode

	opQuery      = 2004
	opCompressed = 2012
	opMsg        = 2013

	flagChecksumPresent = 1 << 0
	flagMoreToCome      = 1 << 1

	// Per-socket read buffer.
	readBufferSize = 64 << 10
	// A connection's message buffer is dropped after a message larger than
	// this, so a single big message does not pin memory for the connection's life.
	keepBufferSize = 1 << 20

	// A write command holding its database's mutex this long is logged.
	slowWriteWarning = 10 * time.Second
)

// writeCommands are the commands (as FerretDB 1.24 registers them, including
// its lower-case aliases) that modify data or metadata and therefore run under
// their database's write mutex.
var writeCommands = map[string]bool{
	"insert":                   true,
	"update":                   true,
	"delete":                   true,
	"findAndModify":            true,
	"findandmodify":            true,
	"create":                   true,
	"createIndexes":            true,
	"dropIndexes":              true,
	"drop":                     true,
	"dropDatabase":             true,
	"renameCollection":         true,
	"collMod":                  true,
	"compact":                  true,
	"createUser":               true,
	"updateUser":               true,
	"dropUser":                 true,
	"dropAllUsersFromDatabase": true,
}

// proxy relays MongoDB wire protocol connections from a public listener to
// FerretDB's internal socket, serialising write commands.
type proxy struct {
	backendNetwork string // "unix" (or "tcp")
	backendAddr    string
	logger         *slog.Logger

	locksMu sync.Mutex
	locks   map[string]*sync.Mutex // per database: held by its one write command in flight
	syncID  atomic.Int32           // request ids of the proxy's own {ping: 1} messages

	connsMu sync.Mutex
	conns   map[*proxyConn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

func newProxy(backendNetwork, backendAddr string, logger *slog.Logger) *proxy {
	p := &proxy{
		backendNetwork: backendNetwork,
		backendAddr:    backendAddr,
		logger:         logger,
		conns:          make(map[*proxyConn]struct{}),
		locks:          make(map[string]*sync.Mutex),
	}
	p.syncID.Store(1 << 30) // far away from the small ids FerretDB uses for its replies
	return p
}

// serve accepts connections on ln until ctx is canceled, then closes ln and
// every proxied connection and waits for their goroutines to finish.
func (p *proxy) serve(ctx context.Context, ln net.Listener) error {
	stop := context.AfterFunc(ctx, func() {
		_ = ln.Close()
		p.closeAll()
	})
	defer stop()

	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				p.closeAll()
				p.wg.Wait()
				return nil
			}
			// e.g. EMFILE: back off a little and keep serving
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.logger.Warn("proxy: accept failed, retrying", "error", err, "in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0

		pc, err := p.open(c)
		if err != nil {
			p.logger.Error("proxy: cannot connect to FerretDB", "backend", p.backendAddr, "error", err)
			_ = c.Close()
			continue
		}
		go pc.run()
	}
}

// dbLock returns the write mutex of database db (created on first use; the
// number of databases is small, so they are never removed).
func (p *proxy) dbLock(db string) *sync.Mutex {
	p.locksMu.Lock()
	defer p.locksMu.Unlock()
	mu := p.locks[db]
	if mu == nil {
		mu = new(sync.Mutex)
		p.locks[db] = mu
	}
	return mu
}

func (p *proxy) closeAll() {
	p.connsMu.Lock()
	p.closed = true
	conns := make([]*proxyConn, 0, len(p.conns))
	for pc := range p.conns {
		conns = append(conns, pc)
	}
	p.connsMu.Unlock()
	for _, pc := range conns {
		pc.close()
	}
}

// proxyConn is one client connection and its dedicated backend connection.
type proxyConn struct {
	p       *proxy
	client  net.Conn
	backend net.Conn

	closeOnce sync.Once

	replies chan []byte   // complete messages read from the backend
	recycle chan []byte   // buffers handed back to the backend reader
	done    chan struct{} // closed when run returns
}

func (p *proxy) open(client net.Conn) (*proxyConn, error) {
	backend, err := net.DialTimeout(p.backendNetwork, p.backendAddr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	pc := &proxyConn{
		p:       p,
		client:  client,
		backend: backend,
		replies: make(chan []byte),
		recycle: make(chan []byte, 1),
		done:    make(chan struct{}),
	}

	p.connsMu.Lock()
	defer p.connsMu.Unlock()
	if p.closed {
		_ = backend.Close()
		return nil, errors.New("shutting down")
	}
	p.conns[pc] = struct{}{}
	p.wg.Add(1)
	return pc, nil
}

// close closes both sides (idempotent).
func (pc *proxyConn) close() {
	pc.closeOnce.Do(func() {
		_ = pc.client.Close()
		_ = pc.backend.Close()
	})
}

// run relays requests from the client until either side is closed.
func (pc *proxyConn) run() {
	defer func() {
		close(pc.done)
		pc.close()
		pc.p.connsMu.Lock()
		delete(pc.p.conns, pc)
		pc.p.connsMu.Unlock()
		pc.p.wg.Done()
	}()

	go pc.readBackend()

	r := bufio.NewReaderSize(pc.client, readBufferSize)
	var buf []byte
	for {
		req, err := readMessage(r, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				pc.p.logger.Debug("proxy: client read failed", "client", pc.client.RemoteAddr(), "error", err)
			}
			return
		}

		if err = pc.roundTrip(req); err != nil {
			if !errors.Is(err, net.ErrClosed) {
				pc.p.logger.Debug("proxy: relay failed", "client", pc.client.RemoteAddr(), "error", err)
			}
			return
		}

		buf = req
		if cap(buf) > keepBufferSize {
			buf = nil
		}
	}
}

// readBackend reads complete messages from FerretDB and hands them to run.
// When the backend connection ends, the client connection is closed too.
func (pc *proxyConn) readBackend() {
	defer pc.close()
	defer close(pc.replies)

	r := bufio.NewReaderSize(pc.backend, readBufferSize)
	var buf []byte
	for {
		msg, err := readMessage(r, buf)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				pc.p.logger.Debug("proxy: backend read failed", "error", err)
			}
			return
		}
		select {
		case pc.replies <- msg:
		case <-pc.done:
			return
		}
		select {
		case buf = <-pc.recycle:
		case <-pc.done:
			return
		}
		if cap(buf) > keepBufferSize {
			buf = nil
		}
	}
}

// recv returns the next message from the backend; the caller must hand the
// buffer back with release once it has been used.
func (pc *proxyConn) recv() ([]byte, error) {
	msg, ok := <-pc.replies
	if !ok {
		return nil, fmt.Errorf("backend connection closed: %w", net.ErrClosed)
	}
	return msg, nil
}

func (pc *proxyConn) release(msg []byte) { pc.recycle <- msg }

// roundTrip forwards one request and relays its reply (or replies).
func (pc *proxyConn) roundTrip(req []byte) error {
	cmd := classify(req)

	var mu *sync.Mutex // held while not nil
	var slow *time.Timer
	if cmd.write {
		mu = pc.p.dbLock(cmd.db)
		mu.Lock()
		slow = time.AfterFunc(slowWriteWarning, func() {
			pc.p.logger.Warn("proxy: write command still running, holding its database's write lock",
				"command", cmd.name, "db", cmd.db, "for", slowWriteWarning, "client", pc.client.RemoteAddr())
		})
	}
	unlock := func() {
		if mu != nil {
			slow.Stop()
			mu.Unlock()
			mu = nil
		}
	}
	defer unlock()

	if _, err := pc.backend.Write(req); err != nil {
		return err
	}

	if cmd.moreToCome {
		// The client expects no reply. Sync with our own ping, dropping all
		// replies up to and including its one (see the file comment).
		id := pc.p.syncID.Add(1)
		if _, err := pc.backend.Write(pingMessage(id)); err != nil {
			return err
		}
		for {
			msg, err := pc.recv()
			if err != nil {
				return err
			}
			responseTo := int32(binary.LittleEndian.Uint32(msg[8:12]))
			pc.release(msg)
			if responseTo == id {
				return nil
			}
		}
	}

	for {
		msg, err := pc.recv()
		if err != nil {
			return err
		}
		// The reply has been read completely: the command is done in FerretDB.
		unlock()

		more := replyMoreToCome(msg)
		_, err = pc.client.Write(msg)
		pc.release(msg)
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
}

// readMessage reads one complete wire protocol message into buf (reusing its
// capacity) and returns it.
func readMessage(r *bufio.Reader, buf []byte) ([]byte, error) {
	if cap(buf) < headerLen {
		buf = make([]byte, headerLen, 512)
	}
	buf = buf[:headerLen]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err // io.EOF for a clean close between messages
	}

	n := int64(int32(binary.LittleEndian.Uint32(buf[0:4])))
	if n < headerLen || n > maxMessageSize {
		return nil, fmt.Errorf("invalid message length %d (opCode %d)", n, int32(binary.LittleEndian.Uint32(buf[12:16])))
	}

	if int64(cap(buf)) < n {
		nb := make([]byte, n)
		copy(nb, buf)
		buf = nb
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf[headerLen:]); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return buf, nil
}

// command is what the proxy needs to know about a request.
type command struct {
	name       string // command name, "" if unknown
	db         string // "$db", "" if unknown
	write      bool   // run under the database's write mutex
	moreToCome bool   // the client expects no reply
}

// classify inspects a request.
func classify(msg []byte) command {
	switch int32(binary.LittleEndian.Uint32(msg[12:16])) {
	case opMsg:
		if len(msg) < headerLen+4 {
			return command{write: true}
		}
		flags := binary.LittleEndian.Uint32(msg[headerLen : headerLen+4])
		cmd := command{moreToCome: flags&flagMoreToCome != 0}
		doc := bodyDocument(msg, flags)
		var ok bool
		if cmd.name, cmd.db, ok = commandAndDB(doc); !ok {
			cmd.write = true
		} else {
			cmd.write = writeCommands[cmd.name]
		}
		return cmd
	case opCompressed:
		return command{write: true}
	default: // opQuery (handshake) and anything else: relay as is
		return command{}
	}
}

// bodyDocument returns the BSON document of an OP_MSG's section kind 0 (its
// length prefix checked against the message), or nil if malformed.
func bodyDocument(msg []byte, flags uint32) []byte {
	end := len(msg)
	if flags&flagChecksumPresent != 0 {
		end -= 4
	}
	pos := headerLen + 4
	for pos < end {
		kind := msg[pos]
		pos++
		if pos+4 > end {
			return nil
		}
		size := int(int32(binary.LittleEndian.Uint32(msg[pos : pos+4])))
		if size < 5 || size > end-pos {
			return nil
		}
		switch kind {
		case 0: // body: one BSON document
			return msg[pos : pos+size]
		case 1: // document sequence: int32 size (including itself), identifier, documents
			pos += size
		default:
			return nil
		}
	}
	return nil
}

// commandAndDB returns the first key of the command document (the command
// name) and the value of its top-level "$db" string ("" if absent); ok is
// false if there is no first key or the document is malformed before "$db".
func commandAndDB(doc []byte) (name, db string, ok bool) {
	if len(doc) < 5 {
		return "", "", false
	}
	for pos, first := 4, true; pos < len(doc) && doc[pos] != 0; first = false {
		t := doc[pos]
		pos++
		k := pos
		for k < len(doc) && doc[k] != 0 {
			k++
		}
		if k >= len(doc) {
			return name, "", !first
		}
		key := string(doc[pos:k])
		pos = k + 1
		if first {
			name = key
		}
		n := bsonValueSize(t, doc[pos:])
		if n < 0 || n > len(doc)-pos {
			return name, "", !first
		}
		if key == "$db" && t == 0x02 && n > 5 {
			return name, string(doc[pos+4 : pos+n-1]), true
		}
		pos += n
	}
	return name, "", name != ""
}

// bsonValueSize returns the encoded size of a BSON value of type t at the
// start of b, or -1 if unknown or truncated.
func bsonValueSize(t byte, b []byte) int {
	i32 := func(off int) int {
		if len(b) < off+4 {
			return -1 << 40
		}
		return int(int32(binary.LittleEndian.Uint32(b[off:])))
	}
	var n int
	switch t {
	case 0x06, 0x0A, 0x7F, 0xFF: // undefined, null, maxKey, minKey
		n = 0
	case 0x08: // bool
		n = 1
	case 0x10: // int32
		n = 4
	case 0x01, 0x09, 0x11, 0x12: // double, datetime, timestamp, int64
		n = 8
	case 0x07: // ObjectId
		n = 12
	case 0x13: // decimal128
		n = 16
	case 0x02, 0x0D, 0x0E: // string, JavaScript code, symbol: int32 length + bytes
		n = 4 + i32(0)
	case 0x03, 0x04, 0x0F: // document, array, code with scope: int32 total length
		n = i32(0)
	case 0x05: // binary: int32 length, subtype, bytes
		n = 4 + 1 + i32(0)
	case 0x0C: // DBPointer: string + ObjectId
		n = 4 + i32(0) + 12
	case 0x0B: // regex: two cstrings
		c := 0
		for i, x := range b {
			if x == 0 {
				if c++; c == 2 {
					return i + 1
				}
			}
		}
		return -1
	default:
		return -1
	}
	if n < 0 || n > len(b) {
		return -1
	}
	return n
}

// replyMoreToCome tells whether a reply has moreToCome set (exhaust).
func replyMoreToCome(msg []byte) bool {
	return len(msg) >= headerLen+4 &&
		int32(binary.LittleEndian.Uint32(msg[12:16])) == opMsg &&
		binary.LittleEndian.Uint32(msg[headerLen:headerLen+4])&flagMoreToCome != 0
}

// pingMessage builds OP_MSG {ping: 1, $db: "admin"} with the given requestID.
func pingMessage(requestID int32) []byte {
	var doc []byte
	doc = append(doc, 0, 0, 0, 0)                  // document length, set below
	doc = append(doc, 0x10)                        // int32
	doc = append(doc, "ping\x00"...)               // key
	doc = binary.LittleEndian.AppendUint32(doc, 1) // value
	doc = append(doc, 0x02)                        // string
	doc = append(doc, "$db\x00"...)                // key
	doc = binary.LittleEndian.AppendUint32(doc, 6) // length of "admin\x00"
	doc = append(doc, "admin\x00"...)              // value
	doc = append(doc, 0)                           // end of document
	binary.LittleEndian.PutUint32(doc[0:4], uint32(len(doc)))

	msg := make([]byte, headerLen, headerLen+4+1+len(doc))
	msg = binary.LittleEndian.AppendUint32(msg, 0) // flagBits
	msg = append(msg, 0)                           // section kind 0
	msg = append(msg, doc...)
	binary.LittleEndian.PutUint32(msg[0:4], uint32(len(msg)))
	binary.LittleEndian.PutUint32(msg[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(msg[8:12], 0)
	binary.LittleEndian.PutUint32(msg[12:16], opMsg)
	return msg
}
