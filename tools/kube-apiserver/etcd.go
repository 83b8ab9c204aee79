package main

// etcd, embedded: one member on loopback, its data in a directory removed at exit.

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd starts etcd with its defaults (so the 1.5 MiB request limit is etcd's own) except
// fsync, which a throw-away test store does without; it returns the client URL.
func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dataDir
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "error"
	var urls [2]url.URL
	for i := range urls {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		urls[i] = url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	}
	cfg.ListenClientUrls = []url.URL{urls[0]}
	cfg.AdvertiseClientUrls = []url.URL{urls[0]}
	cfg.ListenPeerUrls = []url.URL{urls[1]}
	cfg.AdvertisePeerUrls = []url.URL{urls[1]}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, "", err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, urls[0].String(), nil
	case err := <-e.Err():
		e.Close()
		return nil, "", err
	case <-time.After(time.Minute):
		e.Close()
		return nil, "", fmt.Errorf("not ready within a minute")
	}
}
