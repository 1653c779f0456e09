// Command ferretdb-local runs an embedded FerretDB (v1.24.x) with the SQLite
// or the PostgreSQL backend for local development. It is built and started by
// infra/infra.sh.
//
// Flags (each falls back to an environment variable, then to a default):
//
//	-listen          FERRETDB_LISTEN_ADDR     127.0.0.1:27017
//	-handler         FERRETDB_HANDLER         sqlite (or postgresql)
//	-sqlite-dir      FERRETDB_SQLITE_DIR      ./ferretdb-data (sqlite handler)
//	-postgresql-url  FERRETDB_POSTGRESQL_URL  (postgresql handler), e.g.
//	                                          postgres://user@127.0.0.1:5433/ferretdb
//	-state-dir       FERRETDB_STATE_DIR       where the internal socket goes:
//	                                          default the parent of the SQLite dir
//	-socket          FERRETDB_SOCKET          <state dir>/ferretdb.sock
//	                                          (or a temp dir if that path is too long)
//	-log-level       FERRETDB_LOG_LEVEL       info (debug, info, warn, error)
//
// The SQLite directory is created if it does not exist. SIGINT/SIGTERM stop
// the server gracefully.
//
// FerretDB itself listens only on the internal Unix socket -socket; clients
// connect to -listen, served by a small wire-protocol proxy (proxy.go) that
// serialises write commands, because FerretDB 1.24's SQLite backend loses
// concurrent updates of the same document (see proxy.go and infra/README.md);
// its PostgreSQL backend also writes whole documents back, so the proxy stays in
// front of both.
// A stale socket file is removed at start; if another server still answers on
// it, startup fails instead.
//
// With -check, it does not start a server: it connects to the -listen address
// as a MongoDB client, writes, reads back and deletes a document (in the
// database "_advocacy_infra_check", dropped afterwards) and exits 0 on success.
// infra/infra.sh uses that as its readiness probe.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"go.mongodb.org/mongo-driver/bson"
	"go.mongodb.org/mongo-driver/mongo"
	"go.mongodb.org/mongo-driver/mongo/options"
)

// check performs a real write/read/delete round trip against addr.
func check(addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()

	uri := "mongodb://" + addr + "/?directConnection=true"
	client, err := mongo.Connect(ctx, options.Client().ApplyURI(uri).
		SetServerSelectionTimeout(timeout).SetConnectTimeout(timeout))
	if err != nil {
		return fmt.Errorf("connect %s: %w", uri, err)
	}
	defer client.Disconnect(context.Background()) //nolint:errcheck // best effort

	db := client.Database("_advocacy_infra_check")
	coll := db.Collection("ready")
	id := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())

	if _, err = coll.InsertOne(ctx, bson.D{{Key: "_id", Value: id}, {Key: "at", Value: time.Now().UTC()}}); err != nil {
		return fmt.Errorf("insert: %w", err)
	}

	var got bson.M
	if err = coll.FindOne(ctx, bson.D{{Key: "_id", Value: id}}).Decode(&got); err != nil {
		return fmt.Errorf("find: %w", err)
	}

	if _, err = coll.DeleteOne(ctx, bson.D{{Key: "_id", Value: id}}); err != nil {
		return fmt.Errorf("delete: %w", err)
	}

	if err = db.Drop(ctx); err != nil {
		return fmt.Errorf("drop: %w", err)
	}

	return nil
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}

// maxUnixPath stays below the 108-byte sun_path limit of Linux (104 on BSDs).
const maxUnixPath = 100

// defaultSocket returns the internal socket path for the state directory
// absDir: inside it, or in the temp dir (named after absDir) if too long.
func defaultSocket(absDir string) string {
	path := filepath.Join(absDir, "ferretdb.sock")
	if len(path) <= maxUnixPath {
		return path
	}
	sum := sha256.Sum256([]byte(absDir))
	return filepath.Join(os.TempDir(), "ferretdb-"+hex.EncodeToString(sum[:8])+".sock")
}

// prepareSocket removes a stale socket file at path, but fails if a server
// still accepts connections on it (another instance using the same path).
func prepareSocket(path string) error {
	if len(path) > maxUnixPath {
		return fmt.Errorf("socket path %q is longer than %d bytes", path, maxUnixPath)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return os.MkdirAll(filepath.Dir(path), 0o755)
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("%s exists and is not a socket", path)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		_ = c.Close()
		return fmt.Errorf("%s is in use by another running server", path)
	}
	return os.Remove(path)
}

func main() {
	listen := flag.String("listen", envOr("FERRETDB_LISTEN_ADDR", "127.0.0.1:27017"), "TCP listen address (env FERRETDB_LISTEN_ADDR)")
	handler := flag.String("handler", envOr("FERRETDB_HANDLER", "sqlite"), "backend: sqlite or postgresql (env FERRETDB_HANDLER)")
	dir := flag.String("sqlite-dir", envOr("FERRETDB_SQLITE_DIR", "ferretdb-data"), "SQLite data directory, sqlite handler (env FERRETDB_SQLITE_DIR)")
	pgURL := flag.String("postgresql-url", envOr("FERRETDB_POSTGRESQL_URL", ""), "PostgreSQL connection URL, postgresql handler (env FERRETDB_POSTGRESQL_URL)")
	stateDir := flag.String("state-dir", envOr("FERRETDB_STATE_DIR", ""), "directory of the internal socket (env FERRETDB_STATE_DIR; default the parent of -sqlite-dir)")
	socket := flag.String("socket", envOr("FERRETDB_SOCKET", ""), "internal Unix socket FerretDB listens on, behind the proxy (env FERRETDB_SOCKET; default <state dir>/ferretdb.sock)")
	logLevel := flag.String("log-level", envOr("FERRETDB_LOG_LEVEL", "info"), "log level: debug, info, warn, error (env FERRETDB_LOG_LEVEL)")
	doCheck := flag.Bool("check", false, "do not serve: probe a running server at -listen with a write/read/delete and exit")
	checkTimeout := flag.Duration("check-timeout", 5*time.Second, "timeout for -check")
	flag.Parse()

	if *doCheck {
		if err := check(*listen, *checkTimeout); err != nil {
			fmt.Fprintf(os.Stderr, "ferretdb check %s: %v\n", *listen, err)
			os.Exit(1)
		}
		fmt.Printf("ferretdb check %s: ok\n", *listen)
		return
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintf(os.Stderr, "invalid -log-level %q: %v\n", *logLevel, err)
		os.Exit(2)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	cfg := ferretdb.Config{Logger: logger, Handler: *handler}
	var err error
	var absState string
	switch *handler {
	case "sqlite":
		absDir, err := filepath.Abs(*dir)
		if err != nil {
			logger.Error("cannot resolve SQLite directory", "dir", *dir, "error", err)
			os.Exit(1)
		}
		if err = os.MkdirAll(absDir, 0o755); err != nil {
			logger.Error("cannot create SQLite directory", "dir", absDir, "error", err)
			os.Exit(1)
		}
		// FerretDB wants a "file:" URI whose path is an existing directory ending with "/".
		cfg.SQLiteURL = (&url.URL{Scheme: "file", Path: strings.TrimSuffix(absDir, "/") + "/"}).String()
		absState = filepath.Dir(absDir)
	case "postgresql":
		if *pgURL == "" {
			fmt.Fprintln(os.Stderr, "-handler postgresql needs -postgresql-url")
			os.Exit(2)
		}
		cfg.PostgreSQLURL = *pgURL
	default:
		fmt.Fprintf(os.Stderr, "invalid -handler %q: sqlite or postgresql\n", *handler)
		os.Exit(2)
	}
	if *stateDir != "" {
		if absState, err = filepath.Abs(*stateDir); err != nil {
			logger.Error("cannot resolve state directory", "dir", *stateDir, "error", err)
			os.Exit(1)
		}
	}

	sock := *socket
	if sock == "" {
		if absState == "" {
			fmt.Fprintln(os.Stderr, "-handler postgresql needs -state-dir or -socket")
			os.Exit(2)
		}
		sock = defaultSocket(absState)
	}
	if sock, err = filepath.Abs(sock); err != nil {
		logger.Error("cannot resolve socket path", "socket", *socket, "error", err)
		os.Exit(1)
	}
	if err = prepareSocket(sock); err != nil {
		logger.Error("cannot use internal socket", "socket", sock, "error", err)
		os.Exit(1)
	}
	cfg.Listener = ferretdb.ListenerConfig{Unix: sock}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// Take the public address first, so that a busy port fails before the
	// database is opened.
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		logger.Error("cannot listen", "listen", *listen, "error", err)
		os.Exit(1)
	}

	// FerretDB binds its Unix socket in New; connections made before Run
	// starts accepting wait in the backlog.
	f, err := ferretdb.New(&cfg)
	if err != nil {
		_ = ln.Close()
		logger.Error("cannot start FerretDB", "socket", sock, "handler", cfg.Handler, "sqlite", cfg.SQLiteURL, "error", err)
		os.Exit(1)
	}

	// Either part stopping (a signal, or an error) stops the other.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	fdbDone := make(chan error, 1)
	go func() {
		defer cancel()
		fdbDone <- f.Run(ctx)
	}()

	logger.Info("FerretDB listening", "addr", *listen, "socket", sock, "handler", cfg.Handler, "sqlite", cfg.SQLiteURL, "pid", os.Getpid(),
		"proxy", "write commands serialised")

	proxyErr := newProxy("unix", sock, logger).serve(ctx, ln)
	cancel()
	fdbErr := <-fdbDone

	if proxyErr != nil || fdbErr != nil {
		logger.Error("FerretDB stopped with error", "proxy", proxyErr, "ferretdb", fdbErr)
		os.Exit(1)
	}

	logger.Info("FerretDB stopped")
}
