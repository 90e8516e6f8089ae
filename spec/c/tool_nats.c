/*
 * A tool of the remote specs: makes a JetStream stream flume must refuse.
 *
 *   tool_nats URL allow-delete STREAM SUBJECT   a stream that allows deletes
 *   tool_nats URL leader STREAM                  prints the stream leader's
 *                                                server name
 *
 * Exits 0 when done, 1 on failure, 2 when built without libnats.
 */
#include <stdio.h>
#include <string.h>

#ifdef FLUME_REMOTE
#include <nats/nats.h>

int main(int argc, char **argv) {
  int leader = argc == 4 && strcmp(argv[2], "leader") == 0;
  if (!leader && (argc != 5 || strcmp(argv[2], "allow-delete") != 0)) {
    fprintf(stderr, "usage: tool_nats URL allow-delete STREAM SUBJECT\n"
                    "       tool_nats URL leader STREAM\n");
    return 1;
  }
  natsConnection *nc = NULL;
  jsCtx *js = NULL;
  jsStreamInfo *si = NULL;
  jsErrCode jerr = 0;
  natsStatus s = natsConnection_ConnectTo(&nc, argv[1]);
  if (s == NATS_OK) s = natsConnection_JetStream(&js, nc, NULL);
  if (s == NATS_OK && leader) {
    s = js_GetStreamInfo(&si, js, argv[3], NULL, &jerr);
    if (s == NATS_OK && si->Cluster && si->Cluster->Leader)
      printf("%s\n", si->Cluster->Leader);
    else if (s == NATS_OK)
      s = NATS_NOT_FOUND;
  } else if (s == NATS_OK) {
    jsStreamConfig sc;
    const char *subjects[] = {argv[4]};
    jsStreamConfig_Init(&sc);
    sc.Name = argv[3];
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_MemoryStorage;
    s = js_AddStream(&si, js, &sc, NULL, &jerr);
  }
  if (s != NATS_OK)
    fprintf(stderr, "tool_nats: %s (%d)\n", natsStatus_GetText(s), (int)jerr);
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  natsConnection_Destroy(nc);
  nats_Close();
  return s == NATS_OK ? 0 : 1;
}
#else
int main(void) {
  fprintf(stderr, "tool_nats: built without libnats\n");
  return 2;
}
#endif
